
/*
 * The accounting: the usage an answer really had (or an estimate, flagged
 * so) and its cost, worked out in the LOG phase, when the last byte has
 * gone, and handed to the ledger with the answer's outcome.
 */


#include "ngx_http_conductor.h"


static ngx_int_t ngx_http_conductor_answer_class(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);


/*
 * What the answer used: the provider's own numbers, or, when it gave none
 * (a cut stream, a compressed body, a provider that omits them), an
 * estimate of four bytes a token, flagged as such.  An error answer used
 * nothing.  Computed once; the log variables and the commit share it.
 */

ngx_http_conductor_usage_t *
ngx_http_conductor_final_usage(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    off_t                           in;
    ngx_http_conductor_usage_t     *u;
    ngx_http_conductor_price_t     *price;

    u = &ctx->account.final;

    if (ctx->account.final_done) {
        return u;
    }

    ctx->account.final_done = 1;

    ngx_http_conductor_usage_init(u, ctx->endpoint);

    if (r->headers_out.status < NGX_HTTP_OK
        || r->headers_out.status >= NGX_HTTP_SPECIAL_RESPONSE
        || ctx->error_replace)
    {
        return u;
    }

    if (ctx->account.usage.found
        && !(ctx->answer.stream_error && !ctx->account.usage.delta
             && ctx->endpoint == NGX_HTTP_CONDUCTOR_EP_MESSAGES))
    {
        *u = ctx->account.usage;

    } else if (ctx->account.usage.found) {
        /* a cut Anthropic stream: message_start's input is exact, its
         * output a placeholder; what came is estimated */
        *u = ctx->account.usage;
        u->completion = (ctx->account.body_bytes + 3) / 4;
        u->total = u->prompt + u->completion;
        ctx->account.estimated = 1;

    } else {
        in = ctx->body_len ? (off_t) ctx->body_len
                           : r->headers_in.content_length_n;

        u->prompt = in > 0 ? (in + 3) / 4 : 0;
        u->completion = (ctx->account.body_bytes + 3) / 4;

        if (ctx->endpoint == NGX_HTTP_CONDUCTOR_EP_EMBEDDINGS) {
            u->completion = 0;
        }

        u->total = u->prompt + u->completion;
        u->found = 1;
        ctx->account.estimated = 1;
    }

    price = ngx_http_conductor_price_of(ctx, ctx->winner);

    if (price) {
        ctx->account.priced = 1;
        /* pico-USD per token, at their own rates for cache reads and
         * writes; exact over every accepted count (no wrap) */
        ctx->account.cost = ngx_http_conductor_money_cost(u->prompt,
                                u->completion, u->cached, u->cache_creation,
                                price->input, price->output,
                                price->cached_input, price->cache_write);
    }

    return u;
}




/*
 * The price of the model a candidate asks its provider for (the client's
 * own name when the alias passes through); NULL: unpriced.  cand NULL:
 * the provider of conductor_usage.
 */

ngx_http_conductor_price_t *
ngx_http_conductor_price_of(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_cand_t *cand)
{
    ngx_http_conductor_provider_t  *provider;

    if (cand && cand->model.len) {
        return cand->price;
    }

    provider = cand ? cand->provider : ctx->account.usage_provider;

    if (provider == NULL) {
        return NULL;
    }

    return ngx_http_conductor_find_price(provider, &ctx->alias);
}


/*
 * The LOG phase: the usage and cost of the answer, the class of what the
 * client got, and for the attempt that answered, its outcome (a stream's
 * end decides whether it was an answer); the ledger commits them.
 */

ngx_int_t
ngx_http_conductor_log_handler(ngx_http_request_t *r)
{
    ngx_int_t                          err;
    ngx_http_upstream_state_t         *us;
    ngx_http_conductor_ctx_t          *ctx;
    ngx_http_conductor_loc_conf_t     *lcf;
    ngx_http_conductor_outcome_t       o;
    ngx_http_conductor_history_rec_t   rec;

    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (ctx == NULL || ctx->committed) {
        return NGX_OK;
    }

    if (ctx->attempts == 0 && ctx->account.usage_provider == NULL) {
        /* answered by the gateway itself, nothing sent upstream (every
         * key at its limit, none that could serve it, a bad body) */
        lcf = ngx_http_get_module_loc_conf(r, ngx_http_conductor_module);

        if (!lcf->route || r->headers_out.status < NGX_HTTP_BAD_REQUEST) {
            return NGX_OK;
        }
    }

    ctx->committed = 1;

    (void) ngx_http_conductor_final_usage(r, ctx);

    err = ngx_http_conductor_answer_class(r, ctx);

    if (ctx->winner) {
        us = r->upstream ? r->upstream->state : NULL;

        o.status = us ? us->status : 0;
        o.ttfb = (us && us->header_time != (ngx_msec_t) -1)
                 ? us->header_time : 0;
        o.err = ngx_http_conductor_ledger_class(o.status, NGX_DECLINED);

        if (o.err == NGX_DECLINED && ctx->answer.stream_error) {
            o.err = ctx->answer.stream_error;
        }

        ngx_http_conductor_ledger_hints(r, &o);
    }

    ngx_http_conductor_ledger_commit(r, ctx, &o, err,
                                     ngx_http_conductor_history_record(r, ctx,
                                                                       &rec));

    return NGX_OK;
}


/* the error class of the answer the client got, NGX_DECLINED: a good one */

static ngx_int_t
ngx_http_conductor_answer_class(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    ngx_int_t   fault, err;
    ngx_uint_t  status;

    status = r->headers_out.status;

    if (status >= NGX_HTTP_OK && status < NGX_HTTP_BAD_REQUEST
        && !ctx->error_replace)
    {
        return ctx->answer.stream_error ? (ngx_int_t) ctx->answer.stream_error
                                 : NGX_DECLINED;
    }

    /* nginx's own 504 and 502 tell a timeout and an unreachable provider */
    fault = NGX_DECLINED;

    if (status == NGX_HTTP_GATEWAY_TIME_OUT) {
        fault = NGX_HTTP_CONDUCTOR_ERR_TIMEOUT;

    } else if (status == NGX_HTTP_BAD_GATEWAY && ctx->winner == NULL) {
        fault = NGX_HTTP_CONDUCTOR_ERR_CONNECT;
    }

    err = ngx_http_conductor_ledger_class(status, fault);

    return err == NGX_DECLINED ? NGX_HTTP_CONDUCTOR_ERR_4XX : err;
}


/* conductor_usage PROVIDER: accounting only, on a plain proxy_pass */

char *
ngx_http_conductor_usage(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_conductor_loc_conf_t *lcf = conf;

    ngx_str_t                       *value;
    ngx_http_conductor_main_conf_t  *cmcf;

    if (lcf->usage_provider) {
        return "is duplicate";
    }

    value = cf->args->elts;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_conductor_module);

    lcf->usage_provider = ngx_http_conductor_find_provider(cmcf, &value[1]);

    if (lcf->usage_provider == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown provider \"%V\" (a conductor_provider "
                           "must be defined before it)", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
