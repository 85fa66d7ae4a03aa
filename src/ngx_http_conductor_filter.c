
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
static ngx_int_t ngx_http_conductor_body_pass(ngx_http_request_t *r,
    ngx_chain_t *in);
static ngx_int_t ngx_http_conductor_observe(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);
static ngx_int_t ngx_http_conductor_observe_stream(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);
static ngx_int_t ngx_http_conductor_feed_json(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_conductor_gather_json(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, u_char *p, size_t len);
static ngx_int_t ngx_http_conductor_feed_stream(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_chain_t *in);
static ngx_int_t ngx_http_conductor_strip(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_chain_t *in);
static void ngx_http_conductor_strip_emit(void *data, const u_char *p,
    size_t len, int own);
static void ngx_http_conductor_stream_bytes(ngx_http_conductor_ctx_t *ctx,
    u_char *p, size_t len);
static ngx_uint_t ngx_http_conductor_stream_judge(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_int_t rc);
static ngx_chain_t **ngx_http_conductor_stream_end(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_chain_t **ll);
static ngx_buf_t *ngx_http_conductor_stream_error_event(
    ngx_http_request_t *r, ngx_http_conductor_ctx_t *ctx);
static void ngx_http_conductor_stream_finalize(ngx_http_request_t *r,
    ngx_int_t rc);
static void ngx_http_conductor_stream_idle(ngx_event_t *ev);
static void ngx_http_conductor_stream_cleanup(void *data);
static ngx_chain_t *ngx_http_conductor_own_buf(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, size_t size);
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

/*
 * A JSON answer in several buffers up to this size is copied together and
 * read as one piece at its end: its usage from its end, a few hundred
 * instructions whatever its size, where the scanner costs some ten a
 * byte; a longer one is scanned as it passes, never held
 */
#define NGX_HTTP_CONDUCTOR_JSON_GATHER    (64 * 1024)

/*
 * The tail of a stream kept for its end: every line that ends in its last
 * half is seen (the usage chunk, [DONE], message_delta and message_stop
 * end there); a longer line is parsed as it comes.  Each buffer copies at
 * most this much, and the end parses at most this much.
 */
#define NGX_HTTP_CONDUCTOR_STREAM_TAIL    1024


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;


ngx_int_t
ngx_http_conductor_filter_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_conductor_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_conductor_body_filter;

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

    if (!lcf->route && lcf->usage_provider == NULL && lcf->auth != 1) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (ctx) {
        ctx->ttfb = ngx_current_msec - ctx->start;
    }

    /* nginx's own error pages of a routed location, and the refusals of
     * conductor_auth anywhere, in the dialect */
    if ((lcf->route || (ctx && ctx->error))
        && r->err_status >= NGX_HTTP_BAD_REQUEST
        && r->headers_out.status >= NGX_HTTP_BAD_REQUEST)
    {
        if (ctx == NULL) {
            /* refused before the handler ran, e.g. by client_max_body_size */
            ctx = ngx_http_conductor_ctx_create(r, NULL);
            if (ctx == NULL) {
                return NGX_ERROR;
            }
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

    /* which key answered is for the operators: with conductor_auth on,
     * only an admin client sees it unless conductor_response_headers on */
    if (ctx->attempts == 0
        || lcf->response_headers == 0
        || (lcf->response_headers == 2 && lcf->auth == 1
            && !(ctx->client && ctx->client->admin)))
    {
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


/*
 * The answer's last buffer settles the request: its key and client are
 * free, its tokens and cost counted, when the provider is done, not when
 * nginx is done with the connection (the LOG phase waits for a lingering
 * close, up to lingering_timeout, or for a client that keeps the
 * connection open).  Only once the upstream has let the attempt go (its
 * winner is known): a stream cut ends inside the upstream's read, before
 * that, and then nginx closes the request at once.  An answer that never
 * ends (the client went away) is settled in the LOG phase.
 */

static ngx_int_t
ngx_http_conductor_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_int_t                  rc;
    ngx_uint_t                 last;
    ngx_chain_t               *cl;
    ngx_http_conductor_ctx_t  *ctx;

    last = 0;

    if (r == r->main) {
        for (cl = in; cl; cl = cl->next) {
            if (cl->buf->last_buf) {
                last = 1;
                break;
            }
        }
    }

    rc = ngx_http_conductor_body_pass(r, in);

    if (last && rc != NGX_ERROR) {
        ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

        if (ctx && ctx->winner) {
            (void) ngx_http_conductor_log_handler(r);
        }
    }

    return rc;
}


static ngx_int_t
ngx_http_conductor_body_pass(ngx_http_request_t *r, ngx_chain_t *in)
{
    ngx_chain_t               *cl;
    ngx_http_conductor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (ctx == NULL || r != r->main || ctx->answer.passing) {
        return ngx_http_next_body_filter(r, in);
    }

    if (!ctx->error_replace && !ctx->answer.stream_ended) {

        switch (ctx->observe) {

        case NGX_HTTP_CONDUCTOR_OBSERVE_NONE:
            return ngx_http_next_body_filter(r, in);

        case NGX_HTTP_CONDUCTOR_OBSERVE_JSON:
            if (ngx_http_conductor_feed_json(r, ctx, in) != NGX_OK) {
                return NGX_ERROR;
            }

            return ngx_http_next_body_filter(r, in);

        default:
            if (ctx->answer.strip) {
                return ngx_http_conductor_strip(r, ctx, in);
            }

            return ngx_http_conductor_feed_stream(r, ctx, in);
        }
    }

    /*
     * nginx's own error page, or what follows the end we gave a stream,
     * is consumed and never sent; what is pending still goes
     */
    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    if (ctx->answer.stream_ended) {
        /*
         * the upstream, failing, has just turned keepalive off before this
         * flush; the answer we ended is whole, the connection can stay
         */
        r->keepalive = ctx->answer.keepalive;
        return ngx_http_next_body_filter(r, NULL);
    }

    if (ctx->error_sent) {
        return ngx_http_next_body_filter(r, NULL);
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

    const ngx_http_conductor_error_kind_t  *kind;

    status = r->headers_out.status;
    msg = ctx->error;
    code = ctx->error_code;

    kind = ngx_http_conductor_error_kind(status);
    type = kind->type[ngx_http_conductor_dialect(ctx)];

    if (ctx->error_type
        && ngx_http_conductor_dialect(ctx) == NGX_HTTP_CONDUCTOR_OPENAI)
    {
        type = ctx->error_type;
    }
    msg = msg ? msg : kind->message;

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

    if (ngx_http_conductor_dialect(ctx) == NGX_HTTP_CONDUCTOR_ANTHROPIC) {
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

    if ((status == NGX_HTTP_TOO_MANY_REQUESTS
         || status == NGX_HTTP_SERVICE_UNAVAILABLE)
        && ctx->retry_after && ctx->attempts == 0)
    {
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
    ngx_str_t        *ct;
    ngx_table_elt_t  *ce;

    if (r->headers_out.status < NGX_HTTP_OK
        || r->headers_out.status >= NGX_HTTP_SPECIAL_RESPONSE
        || r->header_only)
    {
        return NGX_OK;
    }

    ngx_http_conductor_usage_init(&ctx->account.usage, ctx->endpoint);

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
        if (ngx_http_conductor_observe_stream(r, ctx) != NGX_OK) {
            return NGX_ERROR;
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


/*
 * A stream: its usage is read from its first event and its tail; the
 * usage-only chunk is taken out for a client that did not ask for it; its
 * end is watched, so that a cut, a stall or an end without the stream's
 * last event reaches the client as an error event, never as a success.
 */

static ngx_int_t
ngx_http_conductor_observe_stream(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    u_char                         *tail, *held;
    ngx_pool_cleanup_t             *cln;
    ngx_http_upstream_t            *u;
    ngx_http_conductor_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_conductor_module);

    ctx->account.sse = ngx_palloc(r->pool, sizeof(ngx_http_conductor_sse_t));
    tail = ngx_pnalloc(r->pool, NGX_HTTP_CONDUCTOR_STREAM_TAIL);

    if (ctx->account.sse == NULL || tail == NULL) {
        return NGX_ERROR;
    }

    ngx_http_conductor_sse_init(ctx->account.sse,
                                NGX_HTTP_CONDUCTOR_SSE_LINE_MAX,
                                ngx_http_conductor_usage_sse_handler,
                                &ctx->account.usage);

    /* the line buffer grows in the request's pool; a grown-out one goes
     * back at once (a large allocation is freed by ngx_pfree) */
    ngx_http_conductor_sse_set_allocator(ctx->account.sse,
                                         ngx_http_conductor_sse_alloc,
                                         ngx_http_conductor_sse_free,
                                         r->pool);

    ngx_http_conductor_sse_set_tail(ctx->account.sse, tail,
                                    NGX_HTTP_CONDUCTOR_STREAM_TAIL);

    ctx->observe = NGX_HTTP_CONDUCTOR_OBSERVE_SSE;
    ctx->answer.last_data = ngx_current_msec;

    /* the usage chunk the gateway asked for, the client did not */
    if (ctx->added_usage && !ctx->client_usage && lcf->route) {
        ctx->answer.strip = ngx_palloc(r->pool,
                                       sizeof(ngx_http_conductor_strip_t));
        held = ngx_pnalloc(r->pool, NGX_HTTP_CONDUCTOR_SSE_USAGE_MAX);

        if (ctx->answer.strip == NULL || held == NULL) {
            return NGX_ERROR;
        }

        ngx_http_conductor_strip_init(ctx->answer.strip, held,
                                      NGX_HTTP_CONDUCTOR_SSE_USAGE_MAX,
                                      ngx_http_conductor_strip_emit, ctx);

        ngx_http_clear_content_length(r);
        ngx_http_clear_accept_ranges(r);
    }

    u = r->upstream;

    if (u == NULL) {
        return NGX_OK;
    }

    /* an upstream that fails after the header: we end the stream first */
    ctx->answer.upstream_finalize = u->finalize_request;
    u->finalize_request = ngx_http_conductor_stream_finalize;

    if (lcf->stream_idle == 0) {
        return NGX_OK;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_conductor_stream_cleanup;
    cln->data = ctx;

    ctx->answer.idle_ev.handler = ngx_http_conductor_stream_idle;
    ctx->answer.idle_ev.data = r;
    ctx->answer.idle_ev.log = r->connection->log;

    ngx_add_timer(&ctx->answer.idle_ev, lcf->stream_idle);

    return NGX_OK;
}


static ngx_int_t
ngx_http_conductor_feed_json(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_chain_t *in)
{
    size_t        len;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (!ctx->answer.finished && ngx_buf_in_memory(b) && b->last > b->pos) {
            len = b->last - b->pos;

            if (ctx->account.body_bytes == 0
                && r->headers_out.content_length_n == (off_t) len)
            {
                /* the whole answer in one buffer: read in place */
                (void) ngx_http_conductor_usage_parse_object(
                                           &ctx->account.usage, b->pos, len);
                ctx->account.json_done = 1;

            } else if (!ctx->account.json_done) {

                if (ngx_http_conductor_gather_json(r, ctx, b->pos, len)
                    != NGX_OK)
                {
                    return NGX_ERROR;
                }
            }

            ctx->account.body_bytes += len;
        }

        if (b->last_buf && !ctx->answer.finished) {
            ctx->answer.finished = 1;

            if (ctx->account.scan) {
                (void) ngx_http_conductor_usage_parse_scan(&ctx->account.usage,
                                                           ctx->account.scan);

            } else if (ctx->account.json) {
                (void) ngx_http_conductor_usage_parse_object(
                                           &ctx->account.usage,
                                           ctx->account.json,
                                           ctx->account.json_len);
            }
        }
    }

    return NGX_OK;
}


/*
 * A piece of an answer that does not come in one buffer: copied after the
 * others while they stay within JSON_GATHER, else (and from then on)
 * through the scanner, what was gathered first.
 */

static ngx_int_t
ngx_http_conductor_gather_json(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, u_char *p, size_t len)
{
    off_t    announced;
    size_t   need, size;
    u_char  *buf;

    need = ctx->account.json_len + len;

    if (ctx->account.scan == NULL && need <= NGX_HTTP_CONDUCTOR_JSON_GATHER) {

        if (need > ctx->account.json_size) {

            /* the announced length at once; without one, doubling */

            announced = r->headers_out.content_length_n;

            if (announced >= (off_t) need
                && announced <= NGX_HTTP_CONDUCTOR_JSON_GATHER)
            {
                size = (size_t) announced;

            } else {
                size = ngx_max(ctx->account.json_size, 2048);

                while (size < need) {
                    size *= 2;
                }

                size = ngx_min(size, NGX_HTTP_CONDUCTOR_JSON_GATHER);
            }

            buf = ngx_pnalloc(r->pool, size);
            if (buf == NULL) {
                return NGX_ERROR;
            }

            if (ctx->account.json_len) {
                ngx_memcpy(buf, ctx->account.json, ctx->account.json_len);
                (void) ngx_pfree(r->pool, ctx->account.json);
            }

            ctx->account.json = buf;
            ctx->account.json_size = size;
        }

        ngx_memcpy(ctx->account.json + ctx->account.json_len, p, len);
        ctx->account.json_len = need;

        return NGX_OK;
    }

    if (ctx->account.scan == NULL) {
        ctx->account.scan = ngx_palloc(r->pool,
                                       sizeof(ngx_http_conductor_sse_scan_t));
        buf = ngx_pnalloc(r->pool, NGX_HTTP_CONDUCTOR_USAGE_CAPTURE);

        if (ctx->account.scan == NULL || buf == NULL) {
            return NGX_ERROR;
        }

        /* megabytes are scanned as they pass, never buffered */
        ngx_http_conductor_sse_scan_init(ctx->account.scan, buf,
                                         NGX_HTTP_CONDUCTOR_USAGE_CAPTURE);

        if (ctx->account.json_len) {
            ngx_http_conductor_sse_scan_feed(ctx->account.scan,
                                             ctx->account.json,
                                             ctx->account.json_len);
            (void) ngx_pfree(r->pool, ctx->account.json);
            ctx->account.json = NULL;
            ctx->account.json_len = 0;
        }
    }

    ngx_http_conductor_sse_scan_feed(ctx->account.scan, p, len);

    return NGX_OK;
}


/*
 * A stream the client gets as it is: every buffer goes on untouched; at
 * its end, an incomplete stream gets an error event before the end.
 */

static ngx_int_t
ngx_http_conductor_feed_stream(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_chain_t *in)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl, *out, **ll, *last;

    last = NULL;

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            ngx_http_conductor_stream_bytes(ctx, b->pos, b->last - b->pos);
        }

        if (b->last_buf) {
            last = cl;
        }
    }

    if (last == NULL
        || ngx_http_conductor_stream_judge(r, ctx, 0) == 0)
    {
        return ngx_http_next_body_filter(r, in);
    }

    /* the same links, the end of the answer after our error event */

    out = NULL;
    ll = &out;

    for (cl = in; cl != last->next; cl = cl->next) {
        *ll = ngx_alloc_chain_link(r->pool);
        if (*ll == NULL) {
            return NGX_ERROR;
        }

        (*ll)->buf = cl->buf;
        ll = &(*ll)->next;
    }

    last->buf->last_buf = 0;

    ll = ngx_http_conductor_stream_end(r, ctx, ll);
    if (ll == NULL) {
        return NGX_ERROR;
    }

    *ll = NULL;

    return ngx_http_next_body_filter(r, out);
}


/*
 * Strip mode: the usage-only chunk, known by its structure, is taken out of
 * what the client gets.  The complete lines of a buffer go on in that
 * buffer, uncopied; only a line the buffer ends inside is copied and held
 * until its end (an SSE client could not use it before either), and a
 * buffer with the chunk in it is split around it.
 */

static ngx_int_t
ngx_http_conductor_strip(ngx_http_request_t *r, ngx_http_conductor_ctx_t *ctx,
    ngx_chain_t *in)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_uint_t    last_buf;
    ngx_chain_t  *out, **ll;

    out = NULL;
    ll = &out;

    for ( /* void */ ; in; in = in->next) {
        b = in->buf;
        last_buf = b->last_buf;

        if (ngx_buf_in_memory(b) && b->last > b->pos) {
            ngx_http_conductor_stream_bytes(ctx, b->pos, b->last - b->pos);

            ctx->answer.strip_buf = b;
            ctx->answer.strip_used = 0;
            ctx->answer.strip_ll = ll;

            ngx_http_conductor_strip_feed(ctx->answer.strip, b->pos,
                                          b->last - b->pos);

            if (ctx->answer.strip_ll == NULL) {
                return NGX_ERROR;
            }

            ll = ctx->answer.strip_ll;

            if (!ctx->answer.strip_used) {
                /* held or taken out: nothing of it goes, it is consumed */
                b->pos = b->last;
            }

            b->last_buf = 0;
            b->last_in_chain = 0;
        }

        if (last_buf) {
            (void) ngx_http_conductor_stream_judge(r, ctx, 0);

            ll = ngx_http_conductor_stream_end(r, ctx, ll);
            if (ll == NULL) {
                return NGX_ERROR;
            }
        }
    }

    *ll = NULL;

    /*
     * Called even with nothing new: a call without buffers is how the
     * upstream asks for what the write filter still holds to be sent
     * (a slow client); returning early there stalls the stream for good.
     */

    rc = ngx_http_next_body_filter(r, out);

    ngx_chain_update_chains(r->pool, &ctx->answer.free, &ctx->answer.busy, &out,
                            (ngx_buf_tag_t) &ngx_http_conductor_module);

    return rc;
}


/* strip_feed()'s output: the buffer's own bytes, or a copy */

static void
ngx_http_conductor_strip_emit(void *data, const u_char *p, size_t len,
    int own)
{
    ngx_http_conductor_ctx_t *ctx = data;

    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (ctx->answer.strip_ll == NULL) {
        return;
    }

    if (!own && !ctx->answer.strip_used && ctx->answer.strip_buf) {
        /* a range of the upstream's buffer goes in that buffer */
        cl = ngx_alloc_chain_link(ctx->request->pool);
        if (cl == NULL) {
            ctx->answer.strip_ll = NULL;
            return;
        }

        b = ctx->answer.strip_buf;
        b->pos = (u_char *) p;
        b->last = (u_char *) p + len;

        cl->buf = b;
        ctx->answer.strip_used = 1;

    } else {
        cl = ngx_http_conductor_own_buf(ctx->request, ctx, len);
        if (cl == NULL) {
            ctx->answer.strip_ll = NULL;
            return;
        }

        cl->buf->last = ngx_cpymem(cl->buf->pos, p, len);
    }

    *ctx->answer.strip_ll = cl;
    ctx->answer.strip_ll = &cl->next;
}


/* every byte of a stream passes here: the usage parser and its clock */

static void
ngx_http_conductor_stream_bytes(ngx_http_conductor_ctx_t *ctx, u_char *p,
    size_t len)
{
    ngx_http_conductor_sse_feed(ctx->account.sse, p, len);

    ctx->account.body_bytes += len;
    ctx->answer.last_data = ngx_current_msec;

    ctx->answer.last2[0] = len > 1 ? p[len - 2] : ctx->answer.last2[1];
    ctx->answer.last2[1] = p[len - 1];
}


/*
 * Once, when the stream ends: its usage and last event are read from the
 * tail; rc is the upstream's (0: the provider ended the body).  Returns the
 * error class, 0 when the stream is complete.
 */

static ngx_uint_t
ngx_http_conductor_stream_judge(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_int_t rc)
{
    if (ctx->answer.stream_done) {
        return ctx->answer.stream_error;
    }

    ctx->answer.stream_done = 1;
    ctx->answer.finished = 1;

    if (ctx->answer.idle_ev.timer_set) {
        ngx_del_timer(&ctx->answer.idle_ev);
    }

    ngx_http_conductor_sse_finish(ctx->account.sse);

    if (ctx->account.usage.terminal) {
        /* all there: a connection cut after it changes nothing */
        return 0;
    }

    ctx->answer.stream_error = (rc == NGX_HTTP_GATEWAY_TIME_OUT)
                        ? NGX_HTTP_CONDUCTOR_ERR_STREAM_TIMEOUT
                        : NGX_HTTP_CONDUCTOR_ERR_STREAM_CUT;

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "conductor: the provider's stream %s after %O bytes "
                  "without its last event: the client gets an error event",
                  (ctx->answer.stream_error
                   == NGX_HTTP_CONDUCTOR_ERR_STREAM_TIMEOUT)
                  ? "went quiet" : "ended", ctx->account.body_bytes);

    return ctx->answer.stream_error;
}


/*
 * The end of a judged stream: the line a strip held (when the stream is
 * complete), the error event (when it is not), the end of the answer.
 */

static ngx_chain_t **
ngx_http_conductor_stream_end(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_chain_t **ll)
{
    ngx_chain_t  *cl;

    if (ctx->answer.strip) {
        ctx->answer.strip_buf = NULL;
        ctx->answer.strip_ll = ll;

        ngx_http_conductor_strip_finish(ctx->answer.strip,
                                        ctx->answer.stream_error == 0);

        if (ctx->answer.strip_ll == NULL) {
            return NULL;
        }

        ll = ctx->answer.strip_ll;
    }

    if (ctx->answer.stream_error) {
        cl = ngx_alloc_chain_link(r->pool);
        if (cl == NULL) {
            return NULL;
        }

        cl->buf = ngx_http_conductor_stream_error_event(r, ctx);
        if (cl->buf == NULL) {
            return NULL;
        }

        *ll = cl;
        ll = &cl->next;
    }

    cl = ngx_alloc_chain_link(r->pool);
    if (cl == NULL) {
        return NULL;
    }

    cl->buf = ngx_calloc_buf(r->pool);
    if (cl->buf == NULL) {
        return NULL;
    }

    cl->buf->last_buf = (r == r->main) ? 1 : 0;
    cl->buf->last_in_chain = 1;
    cl->buf->flush = 1;

    *ll = cl;

    return &cl->next;
}


/*
 * The error event, in the dialect of the endpoint, on a line of its own:
 * OpenAI chat and completions take an error chunk, Responses an "error"
 * event, Anthropic an "error" event; each SDK raises on it.
 */

static ngx_buf_t *
ngx_http_conductor_stream_error_event(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    u_char      *p, a, b;
    ngx_buf_t   *buf;
    const char  *code, *msg, *sep;

    if (ctx->answer.stream_error == NGX_HTTP_CONDUCTOR_ERR_STREAM_TIMEOUT) {
        code = "stream_timeout";
        msg = "the provider sent nothing for too long: the stream was ended "
              "before it was complete";

    } else {
        code = "stream_cut";
        msg = "the provider's stream ended before it was complete";
    }

    /* an event the cut left open is ended first */
    a = ctx->answer.last2[0];
    b = ctx->answer.last2[1];

    if (ctx->account.body_bytes == 0 || (a == b && (b == '\n' || b == '\r'))) {
        sep = "";

    } else if (b == '\n' || b == '\r') {
        sep = "\n";

    } else {
        sep = "\n\n";
    }

    buf = ngx_create_temp_buf(r->pool, 512);
    if (buf == NULL) {
        return NULL;
    }

    p = ngx_sprintf(buf->last, "%s", sep);

    if (ngx_http_conductor_dialect(ctx) == NGX_HTTP_CONDUCTOR_ANTHROPIC) {
        p = ngx_sprintf(p, "event: error\ndata: {\"type\":\"error\","
                           "\"error\":{\"type\":\"api_error\","
                           "\"message\":\"%s\"}}\n\n", msg);

    } else if (ctx->endpoint == NGX_HTTP_CONDUCTOR_EP_RESPONSES) {
        p = ngx_sprintf(p, "event: error\ndata: {\"type\":\"error\","
                           "\"code\":\"%s\",\"message\":\"%s\","
                           "\"param\":null,\"error\":{\"type\":"
                           "\"server_error\",\"code\":\"%s\","
                           "\"message\":\"%s\"}}\n\n",
                        code, msg, code, msg);

    } else {
        p = ngx_sprintf(p, "data: {\"error\":{\"message\":\"%s\","
                           "\"type\":\"server_error\",\"param\":null,"
                           "\"code\":\"%s\"}}\n\n", msg, code);
    }

    buf->last = p;
    buf->flush = 1;

    return buf;
}


/*
 * u->finalize_request of a stream: the upstream ends with an error after
 * the header went (a reset, a timeout, a broken chunk), where nginx would
 * only close the client's connection, a truncated answer.  The stream is
 * ended here: an error event when it was incomplete, and a proper end of
 * the answer, which nginx then sends even to a slow client.
 */

static void
ngx_http_conductor_stream_finalize(ngx_http_request_t *r, ngx_int_t rc)
{
    ngx_chain_t               *out, **ll;
    ngx_http_conductor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (rc != 0 && rc != NGX_DECLINED
        && rc != NGX_HTTP_CLIENT_CLOSED_REQUEST
        && rc != NGX_HTTP_REQUEST_TIME_OUT
        && r->upstream->header_sent
        && !ctx->answer.stream_done && !ctx->answer.stream_ended
        && !r->connection->error)
    {
        (void) ngx_http_conductor_stream_judge(r, ctx, rc);

        ctx->answer.keepalive = r->keepalive;
        out = NULL;
        ll = ngx_http_conductor_stream_end(r, ctx, &out);

        if (ll) {
            *ll = NULL;

            ctx->answer.passing = 1;
            (void) ngx_http_output_filter(r, out);
            ctx->answer.passing = 0;

            if (ctx->answer.strip) {
                ngx_chain_update_chains(r->pool, &ctx->answer.free,
                                        &ctx->answer.busy, &out,
                                        (ngx_buf_tag_t)
                                            &ngx_http_conductor_module);
            }
        }

        ctx->answer.stream_ended = 1;
    }

    ctx->answer.upstream_finalize(r, rc);
}


/*
 * conductor_stream_timeout idle=T: the provider sent nothing for T.  The
 * upstream's read event is made to time out, as proxy_read_timeout does,
 * so the upstream ends the stream in its own way and the finalizer above
 * gives the client its error event.
 */

static void
ngx_http_conductor_stream_idle(ngx_event_t *ev)
{
    ngx_msec_t                      idle;
    ngx_connection_t               *c;
    ngx_http_request_t             *r;
    ngx_http_conductor_ctx_t       *ctx;
    ngx_http_conductor_loc_conf_t  *lcf;

    r = ev->data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);
    lcf = ngx_http_get_module_loc_conf(r, ngx_http_conductor_module);

    if (ctx == NULL || ctx->answer.stream_done || r->upstream == NULL) {
        return;
    }

    idle = ngx_current_msec - ctx->answer.last_data;

    if (idle < lcf->stream_idle) {
        ngx_add_timer(ev, lcf->stream_idle - idle);
        return;
    }

    c = r->upstream->peer.connection;

    if (c == NULL) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "conductor: the provider sent nothing for %M ms "
                  "(conductor_stream_timeout)", idle);

    c->read->timedout = 1;
    c->read->handler(c->read);
}


static void
ngx_http_conductor_stream_cleanup(void *data)
{
    ngx_http_conductor_ctx_t *ctx = data;

    if (ctx->answer.idle_ev.timer_set) {
        ngx_del_timer(&ctx->answer.idle_ev);
    }
}


/* a buffer of our own for size bytes, reused once the client has it */

static ngx_chain_t *
ngx_http_conductor_own_buf(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, size_t size)
{
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    cl = ngx_chain_get_free_buf(r->pool, &ctx->answer.free);
    if (cl == NULL) {
        return NULL;
    }

    b = cl->buf;

    if (b->start == NULL || (size_t) (b->end - b->start) < size) {
        size = ngx_max(size, 512);

        b->start = ngx_palloc(r->pool, size);
        if (b->start == NULL) {
            return NULL;
        }

        b->end = b->start + size;
    }

    b->pos = b->start;
    b->last = b->start;
    b->temporary = 1;
    b->flush = 1;
    b->tag = (ngx_buf_tag_t) &ngx_http_conductor_module;

    return cl;
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
