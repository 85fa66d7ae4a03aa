
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
static ngx_int_t ngx_http_conductor_observe(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);
static ngx_int_t ngx_http_conductor_feed(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_conductor_strip(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_conductor_strip_bytes(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, u_char *p, u_char *end, ngx_buf_t **obp);
static ngx_int_t ngx_http_conductor_strip_line(ngx_http_conductor_ctx_t *ctx,
    u_char *line, size_t len);
static void ngx_http_conductor_sse_line(void *data,
    const ngx_http_conductor_sse_line_t *line);
static void *ngx_http_conductor_sse_alloc(void *data, size_t size);
static void ngx_http_conductor_sse_free(void *data, void *p);
static ngx_int_t ngx_http_conductor_replace_error(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);
static ngx_int_t ngx_http_conductor_add_header(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);


/*
 * Room for the usage object of a JSON answer (a few hundred bytes): small
 * enough to come from the request's pool, not from malloc, on every answer
 */
#define NGX_HTTP_CONDUCTOR_USAGE_CAPTURE  2048


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

    if (!lcf->route && lcf->usage_provider == NULL) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (ctx) {
        ctx->ttfb = ngx_current_msec - ctx->start;
    }

    if (lcf->route && r->err_status >= NGX_HTTP_BAD_REQUEST
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

    if (ctx == NULL) {
        return ngx_http_next_header_filter(r);
    }

    if (!ctx->error_replace
        && ngx_http_conductor_observe(r, ctx) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ctx->attempts == 0 || !lcf->response_headers) {
        return ngx_http_next_header_filter(r);
    }

    /* before the balancer's free: the answering attempt is the current */
    cand = ctx->cand;

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

    if (ctx == NULL || r != r->main) {
        return ngx_http_next_body_filter(r, in);
    }

    if (!ctx->error_replace) {

        if (ctx->observe == NGX_HTTP_CONDUCTOR_OBSERVE_NONE) {
            return ngx_http_next_body_filter(r, in);
        }

        if (ctx->strip) {
            return ngx_http_conductor_strip(r, ctx, in);
        }

        if (ngx_http_conductor_feed(r, ctx, in) != NGX_OK) {
            return NGX_ERROR;
        }

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

    if (status == NGX_HTTP_TOO_MANY_REQUESTS && ctx->retry_after) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_ERROR;
        }

        p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        /* whole seconds, rounded up: never earlier than the room */
        h->hash = 1;
        ngx_str_set(&h->key, "Retry-After");
        h->value.data = p;
        h->value.len = ngx_sprintf(p, "%M",
                                   (ctx->retry_after + 999) / 1000) - p;
    }

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


/*
 * The answer's body is observed for its usage when it is a successful JSON
 * or SSE answer: everything else (errors, compressed bodies) is estimated.
 */

static ngx_int_t
ngx_http_conductor_observe(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    ngx_str_t                      *ct;
    ngx_table_elt_t                *ce;
    ngx_http_conductor_loc_conf_t  *lcf;

    if (r->headers_out.status < NGX_HTTP_OK
        || r->headers_out.status >= NGX_HTTP_SPECIAL_RESPONSE
        || r->header_only)
    {
        return NGX_OK;
    }

    ngx_http_conductor_usage_init(&ctx->usage,
                                  ngx_http_conductor_usage_api(ctx->endpoint));

    ce = r->headers_out.content_encoding;

    if (ce && ce->value.len
        && !(ce->value.len == 8
             && ngx_strncasecmp(ce->value.data, (u_char *) "identity", 8)
                == 0))
    {
        return NGX_OK;
    }

    ct = &r->headers_out.content_type;

    if (ct->len >= 17
        && ngx_strncasecmp(ct->data, (u_char *) "text/event-stream", 17) == 0)
    {
        ctx->sse = ngx_palloc(r->pool, sizeof(ngx_http_conductor_sse_t));
        if (ctx->sse == NULL) {
            return NGX_ERROR;
        }

        ngx_http_conductor_sse_init(ctx->sse, NGX_HTTP_CONDUCTOR_SSE_LINE_MAX,
                                    ngx_http_conductor_sse_line, ctx);

        /* the line buffer grows in the request's pool; a grown-out one
         * goes back at once (a large allocation is freed by ngx_pfree) */
        ngx_http_conductor_sse_set_allocator(ctx->sse,
                                             ngx_http_conductor_sse_alloc,
                                             ngx_http_conductor_sse_free,
                                             r->pool);

        ctx->observe = NGX_HTTP_CONDUCTOR_OBSERVE_SSE;

        lcf = ngx_http_get_module_loc_conf(r, ngx_http_conductor_module);

        /* the usage chunk the gateway asked for, the client did not */
        if (ctx->added_usage && !ctx->client_usage && lcf->route) {
            ctx->strip = 1;
            ngx_http_clear_content_length(r);
            ngx_http_clear_accept_ranges(r);
        }

    } else if (ngx_strlcasestrn(ct->data, ct->data + ct->len,
                                (u_char *) "json", 4 - 1)
               != NULL)
    {
        ctx->observe = NGX_HTTP_CONDUCTOR_OBSERVE_JSON;

    } else {
        return NGX_OK;
    }

    r->filter_need_in_memory = 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_conductor_feed(ngx_http_request_t *r, ngx_http_conductor_ctx_t *ctx,
    ngx_chain_t *in)
{
    size_t        len;
    u_char       *buf;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (!ctx->finished && ngx_buf_in_memory(b) && b->last > b->pos) {
            len = b->last - b->pos;

            if (ctx->observe == NGX_HTTP_CONDUCTOR_OBSERVE_SSE) {
                ngx_http_conductor_sse_feed(ctx->sse, b->pos, len);

            } else if (ctx->body_bytes == 0
                       && r->headers_out.content_length_n == (off_t) len)
            {
                /* the whole answer in one buffer: read in place */
                (void) ngx_http_conductor_usage_parse_object(&ctx->usage,
                                                             b->pos, len);
                ctx->json_done = 1;

            } else if (!ctx->json_done) {

                if (ctx->scan == NULL) {
                    ctx->scan = ngx_palloc(r->pool,
                                        sizeof(ngx_http_conductor_sse_scan_t));
                    buf = ngx_pnalloc(r->pool,
                                      NGX_HTTP_CONDUCTOR_USAGE_CAPTURE);

                    if (ctx->scan == NULL || buf == NULL) {
                        return NGX_ERROR;
                    }

                    /* megabytes are scanned as they pass, never buffered */
                    ngx_http_conductor_sse_scan_init(ctx->scan, buf,
                                             NGX_HTTP_CONDUCTOR_USAGE_CAPTURE);
                }

                ngx_http_conductor_sse_scan_feed(ctx->scan, b->pos, len);
            }

            ctx->body_bytes += len;
        }

        if (b->last_buf && !ctx->finished) {
            ctx->finished = 1;

            if (ctx->observe == NGX_HTTP_CONDUCTOR_OBSERVE_SSE) {
                ngx_http_conductor_sse_finish(ctx->sse);

            } else if (ctx->scan) {
                (void) ngx_http_conductor_usage_parse_scan(&ctx->usage,
                                                           ctx->scan);
            }
        }
    }

    return NGX_OK;
}


/*
 * Strip mode: the usage-only chunk the gateway asked for is taken out of
 * what a client that did not ask receives.  It comes after the chunk that
 * finishes the choice, so until the parser has seen that one the stream
 * goes on untouched, buffer by buffer; after it, line by line: every
 * complete line leaves at once, unchanged, but the usage chunk and the
 * blank line that ends its event; only a partial last line of a buffer
 * waits for its end, which an SSE client could not use before either.
 */

static ngx_int_t
ngx_http_conductor_strip(ngx_http_request_t *r, ngx_http_conductor_ctx_t *ctx,
    ngx_chain_t *in)
{
    size_t        cut;
    uint64_t      off;
    ngx_uint_t    careful, last_buf, last_in_chain, flush;
    ngx_int_t     rc;
    ngx_buf_t    *b, *ob;
    ngx_chain_t  *cl, *out, **ll;

    out = NULL;
    ll = &out;

    for ( /* void */ ; in; in = in->next) {
        b = in->buf;
        ob = NULL;
        cut = 0;
        last_buf = b->last_buf;
        last_in_chain = b->last_in_chain;
        flush = b->flush;

        if (ngx_buf_in_memory(b) && b->last > b->pos) {

            off = ctx->sse->offset;
            careful = ctx->careful;

            ngx_http_conductor_sse_feed(ctx->sse, b->pos, b->last - b->pos);

            ctx->body_bytes += b->last - b->pos;

            if (!careful && !ctx->careful) {
                /* nothing to take out here: the buffer goes as it is */
                cl = ngx_alloc_chain_link(r->pool);
                if (cl == NULL) {
                    return NGX_ERROR;
                }

                cl->buf = b;
                *ll = cl;
                ll = &cl->next;
                continue;
            }

            if (!careful) {
                /* the finishing chunk ended in this buffer: the bytes up
                 * to its end go as they are, the rest line by line */
                cut = ctx->careful_from > off ? ctx->careful_from - off : 0;
            }

            if (ngx_http_conductor_strip_bytes(r, ctx, b->pos + cut, b->last,
                                               &ob)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            /* the end of the answer goes with the last bytes, our own */
            b->last = b->pos + cut;
            b->last_buf = 0;
            b->last_in_chain = 0;

            if (cut) {
                cl = ngx_alloc_chain_link(r->pool);
                if (cl == NULL) {
                    return NGX_ERROR;
                }

                cl->buf = b;
                *ll = cl;
                ll = &cl->next;
            }
        }

        if (last_buf || last_in_chain || flush) {

            if (last_buf && ctx->held_len) {
                /* a cut stream: what is left goes as it came */
                if (ngx_http_conductor_strip_bytes(r, ctx, NULL, NULL, &ob)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            if (ob == NULL) {
                cl = ngx_chain_get_free_buf(r->pool, &ctx->free);
                if (cl == NULL) {
                    return NGX_ERROR;
                }

                ob = cl->buf;
                ngx_memzero(ob, sizeof(ngx_buf_t));
                ob->tag = (ngx_buf_tag_t) &ngx_http_conductor_module;

            } else {
                cl = ctx->ob_link;
            }

            ob->last_buf = last_buf;
            ob->last_in_chain = last_in_chain;
            ob->flush = 1;

            if (ob->pos == ob->last) {
                /* nothing kept: the flags alone go on */
                ob->temporary = 0;
                ob->sync = ob->last_buf ? 0 : 1;
            }

        } else if (ob) {
            cl = ctx->ob_link;

            if (ob->pos == ob->last) {
                continue;
            }

        } else {
            continue;
        }

        *ll = cl;
        ll = &cl->next;
    }

    *ll = NULL;

    if (out == NULL && ctx->busy == NULL) {
        return NGX_OK;
    }

    rc = ngx_http_next_body_filter(r, out);

    ngx_chain_update_chains(r->pool, &ctx->free, &ctx->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_conductor_module);

    return rc;
}


/*
 * The kept lines of [p, end) (with a partial line held from before) into a
 * buffer of our own; p == NULL flushes what is held, as it came.
 */

static ngx_int_t
ngx_http_conductor_strip_bytes(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, u_char *p, u_char *end, ngx_buf_t **obp)
{
    size_t        size, n;
    u_char       *nl;
    ngx_buf_t    *ob;
    ngx_chain_t  *cl;

    size = ctx->held_len + (p ? (size_t) (end - p) : 0);

    cl = ngx_chain_get_free_buf(r->pool, &ctx->free);
    if (cl == NULL) {
        return NGX_ERROR;
    }

    ob = cl->buf;

    if (ob->start == NULL || (size_t) (ob->end - ob->start) < size) {
        ob->start = ngx_palloc(r->pool, ngx_max(size, 4096));
        if (ob->start == NULL) {
            return NGX_ERROR;
        }

        ob->end = ob->start + ngx_max(size, 4096);
    }

    ob->pos = ob->start;
    ob->last = ob->start;
    ob->temporary = 1;
    ob->sync = 0;
    ob->last_buf = 0;
    ob->last_in_chain = 0;
    ob->flush = 1;
    ob->tag = (ngx_buf_tag_t) &ngx_http_conductor_module;

    *obp = ob;
    ctx->ob_link = cl;

    if (p == NULL) {
        ob->last = ngx_cpymem(ob->last, ctx->held, ctx->held_len);
        ctx->held_len = 0;
        return NGX_OK;
    }

    while (p < end) {
        nl = ngx_strlchr(p, end, '\n');

        if (ctx->long_line) {
            /* a line too long to be the usage chunk goes on as it is */
            n = (nl ? nl + 1 : end) - p;
            ob->last = ngx_cpymem(ob->last, p, n);
            p += n;
            ctx->long_line = (nl == NULL);
            continue;
        }

        n = (nl ? nl + 1 : end) - p;

        if (ctx->held_len + n > NGX_HTTP_CONDUCTOR_SSE_USAGE_MAX) {
            ob->last = ngx_cpymem(ob->last, ctx->held, ctx->held_len);
            ob->last = ngx_cpymem(ob->last, p, n);
            ctx->held_len = 0;
            ctx->long_line = (nl == NULL);
            p += n;
            continue;
        }

        if (ctx->held == NULL) {
            ctx->held = ngx_pnalloc(r->pool, NGX_HTTP_CONDUCTOR_SSE_USAGE_MAX);
            if (ctx->held == NULL) {
                return NGX_ERROR;
            }
        }

        ngx_memcpy(ctx->held + ctx->held_len, p, n);
        ctx->held_len += n;
        p += n;

        if (nl == NULL) {
            break;
        }

        if (ngx_http_conductor_strip_line(ctx, ctx->held, ctx->held_len)) {
            ob->last = ngx_cpymem(ob->last, ctx->held, ctx->held_len);
        }

        ctx->held_len = 0;
    }

    return NGX_OK;
}


/* 1: the line goes on; 0: it is the usage chunk or the end of its event */

static ngx_int_t
ngx_http_conductor_strip_line(ngx_http_conductor_ctx_t *ctx, u_char *line,
    size_t len)
{
    size_t   n;
    u_char  *p;

    n = len;

    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        n--;
    }

    if (n == 0) {
        if (ctx->drop_blank) {
            ctx->drop_blank = 0;
            return 0;
        }

        return 1;
    }

    ctx->drop_blank = 0;

    if (n < 5 || ngx_strncmp(line, "data:", 5) != 0) {
        return 1;
    }

    p = line + 5;
    n -= 5;

    if (n && *p == ' ') {
        p++;
        n--;
    }

    if (ngx_http_conductor_usage_only_chunk(p, n)) {
        ctx->drop_blank = 1;
        return 0;
    }

    return 1;
}


/*
 * Every data line of a stream: its usage, and, in strip mode, whether it
 * is the chunk that finishes a choice ("finish_reason" with a string, near
 * the end of the chunk as the APIs write it): the usage chunk comes after.
 */

static void
ngx_http_conductor_sse_line(void *data,
    const ngx_http_conductor_sse_line_t *line)
{
    ngx_http_conductor_ctx_t *ctx = data;

    size_t         n;
    const u_char  *p;

    ngx_http_conductor_usage_sse_handler(&ctx->usage, line);

    if (!ctx->strip || ctx->careful
        || !(line->flags & NGX_HTTP_CONDUCTOR_SSE_DATA))
    {
        return;
    }

    n = ngx_min(line->len, 96);
    p = line->data + line->len - n;

    if (memmem(p, n, "\"finish_reason\":\"", 17) != NULL) {
        ctx->careful = 1;
        ctx->careful_from = line->line_end;
    }
}


static void *
ngx_http_conductor_sse_alloc(void *data, size_t size)
{
    return ngx_palloc((ngx_pool_t *) data, size);
}


static void
ngx_http_conductor_sse_free(void *data, void *p)
{
    (void) ngx_pfree((ngx_pool_t *) data, p);
}
