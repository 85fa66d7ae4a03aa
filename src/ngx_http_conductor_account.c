
/*
 * The accounting: the usage an answer really had (or an estimate, flagged
 * so), its cost, and the totals it adds to its key, provider and model in
 * the zone.  Committed in the LOG phase, when the last byte has gone.
 */


#include "ngx_http_conductor.h"


static uint64_t ngx_http_conductor_cost(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_price_t *price);
static void ngx_http_conductor_reconcile(ngx_http_conductor_node_t *node,
    ngx_http_conductor_ctx_t *ctx);
static void ngx_http_conductor_add_totals(ngx_http_conductor_node_t *node,
    ngx_http_conductor_ctx_t *ctx, ngx_int_t err);
static ngx_int_t ngx_http_conductor_answer_class(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);
static ngx_int_t ngx_http_conductor_log_refused(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);


ngx_int_t
ngx_http_conductor_usage_api(ngx_uint_t endpoint)
{
    static ngx_int_t  api[] = {
        NGX_HTTP_CONDUCTOR_USAGE_CHAT,
        NGX_HTTP_CONDUCTOR_USAGE_COMPLETIONS,
        NGX_HTTP_CONDUCTOR_USAGE_EMBEDDINGS,
        NGX_HTTP_CONDUCTOR_USAGE_RESPONSES,
        NGX_HTTP_CONDUCTOR_USAGE_ANTHROPIC
    };

    return api[endpoint];
}


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
    ngx_str_t                       model;
    ngx_http_conductor_cand_t      *cand;
    ngx_http_conductor_usage_t     *u;
    ngx_http_conductor_price_t     *price;

    u = &ctx->final;

    if (ctx->final_done) {
        return u;
    }

    ctx->final_done = 1;

    ngx_http_conductor_usage_init(u,
                                  ngx_http_conductor_usage_api(ctx->endpoint));

    if (r->headers_out.status < NGX_HTTP_OK
        || r->headers_out.status >= NGX_HTTP_SPECIAL_RESPONSE
        || ctx->error_replace)
    {
        return u;
    }

    if (ctx->usage.found
        && !(ctx->stream_error && !ctx->usage.delta
             && ctx->endpoint == NGX_HTTP_CONDUCTOR_EP_MESSAGES))
    {
        *u = ctx->usage;

    } else if (ctx->usage.found) {
        /* a cut Anthropic stream: message_start's input is exact, its
         * output a placeholder; what came is estimated */
        *u = ctx->usage;
        u->completion = (ctx->body_bytes + 3) / 4;
        u->total = u->prompt + u->completion;
        ctx->estimated = 1;

    } else {
        in = ctx->body_len ? (off_t) ctx->body_len
                           : r->headers_in.content_length_n;

        u->prompt = in > 0 ? (in + 3) / 4 : 0;
        u->completion = (ctx->body_bytes + 3) / 4;

        if (ctx->endpoint == NGX_HTTP_CONDUCTOR_EP_EMBEDDINGS) {
            u->completion = 0;
        }

        u->total = u->prompt + u->completion;
        u->found = 1;
        ctx->estimated = 1;
    }

    /* the price of the model the provider was asked for */
    cand = ctx->winner;
    price = NULL;

    if (cand && cand->model.len) {
        price = cand->price;

    } else if (cand || ctx->usage_provider) {
        model = ctx->alias;
        price = ngx_http_conductor_find_price(cand ? cand->provider
                                                   : ctx->usage_provider,
                                              &model);
    }

    if (price) {
        ctx->priced = 1;
        ctx->cost = ngx_http_conductor_cost(u, price);
    }

    return u;
}


/*
 * Prices are pico-USD per token.  Cached input has its own price when one
 * is given (cache reads are cheaper), and so does input written to cache.
 */

static uint64_t
ngx_http_conductor_cost(ngx_http_conductor_usage_t *u,
    ngx_http_conductor_price_t *price)
{
    uint64_t  plain, cached, created;

    cached = u->cached;
    created = u->cache_creation;
    plain = (uint64_t) u->prompt > cached + created
            ? (uint64_t) u->prompt - cached - created : 0;

    return plain * price->input
           + cached * (price->cached_input ? price->cached_input
                                           : price->input)
           + created * (price->cache_write ? price->cache_write
                                           : price->input)
           + (uint64_t) u->completion * price->output;
}


ngx_int_t
ngx_http_conductor_log_handler(ngx_http_request_t *r)
{
    ngx_int_t                        err;
    ngx_http_conductor_ctx_t        *ctx;
    ngx_http_conductor_cand_t       *cand;
    ngx_http_conductor_node_t       *key, *provider, *model;
    ngx_http_conductor_main_conf_t  *cmcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (ctx == NULL || ctx->committed) {
        return NGX_OK;
    }

    if (ctx->attempts == 0 && ctx->usage_provider == NULL) {
        return ngx_http_conductor_log_refused(r, ctx);
    }

    ctx->committed = 1;

    (void) ngx_http_conductor_final_usage(r, ctx);

    err = ngx_http_conductor_answer_class(r, ctx);

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    cand = ctx->winner ? ctx->winner : ctx->cand;
    key = ctx->winner ? ctx->winner->key->node : NULL;
    provider = cand ? cand->provider->node : ctx->usage_provider->node;
    model = ctx->model ? ctx->model->node : NULL;

    ngx_http_conductor_shm_lock(cmcf);

    if (ctx->inflight) {
        /* reserved in the routing handler, never handed to the balancer */
        ctx->cand->key->node->inflight--;
        ctx->inflight = 0;
    }

    if (key) {
        /* the key's requests and errors were counted per attempt */
        ngx_http_conductor_add_totals(key, ctx, NGX_ERROR);

        if (ctx->outcome_pending) {
            /* a stream: only its end tells an answer from a failure */
            if (ctx->stream_error) {
                key->errors[ctx->stream_error]++;
                ngx_http_conductor_breaker(cmcf, key,
                                           ngx_http_conductor_now_ms());

            } else {
                ngx_http_conductor_breaker_pass(key, provider);
            }
        }
    }

    if (ctx->reserved && ctx->cand) {
        ngx_http_conductor_reconcile(ctx->cand->key->node, ctx);
    }

    ngx_http_conductor_add_totals(provider, ctx, err);

    if (model) {
        ngx_http_conductor_add_totals(model, ctx, err);
    }

    ngx_http_conductor_shm_unlock(cmcf);

    return NGX_OK;
}


/* the error class of the answer the client got, NGX_DECLINED: a good one */

static ngx_int_t
ngx_http_conductor_answer_class(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    ngx_uint_t  status;

    status = r->headers_out.status;

    if (status >= NGX_HTTP_OK && status < NGX_HTTP_BAD_REQUEST
        && !ctx->error_replace)
    {
        return ctx->stream_error ? (ngx_int_t) ctx->stream_error
                                 : NGX_DECLINED;
    }

    if (status == NGX_HTTP_TOO_MANY_REQUESTS) {
        return NGX_HTTP_CONDUCTOR_ERR_429;
    }

    if (status == NGX_HTTP_GATEWAY_TIME_OUT) {
        return NGX_HTTP_CONDUCTOR_ERR_TIMEOUT;
    }

    if (status == NGX_HTTP_BAD_GATEWAY && ctx->winner == NULL) {
        return NGX_HTTP_CONDUCTOR_ERR_CONNECT;
    }

    if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        return NGX_HTTP_CONDUCTOR_ERR_5XX;
    }

    return NGX_HTTP_CONDUCTOR_ERR_4XX;
}


/*
 * A routed request the gateway answered itself, nothing sent upstream
 * (every key at its limit: 429; none could ever serve it: 503; a bad
 * body: 400): counted for its model alias and in the gateway's own node,
 * which the status totals include.
 */

static ngx_int_t
ngx_http_conductor_log_refused(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    ngx_int_t                        err;
    ngx_http_conductor_loc_conf_t   *lcf;
    ngx_http_conductor_main_conf_t  *cmcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_conductor_module);

    if (!lcf->route || r->headers_out.status < NGX_HTTP_BAD_REQUEST) {
        return NGX_OK;
    }

    ctx->committed = 1;

    (void) ngx_http_conductor_final_usage(r, ctx);

    err = ngx_http_conductor_answer_class(r, ctx);

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    if (cmcf->sh == NULL) {
        return NGX_OK;
    }

    ngx_http_conductor_shm_lock(cmcf);

    ngx_http_conductor_add_totals(&cmcf->sh->gateway, ctx, err);

    if (ctx->model) {
        ngx_http_conductor_add_totals(ctx->model->node, ctx, err);
    }

    ngx_http_conductor_shm_unlock(cmcf);

    return NGX_OK;
}


/* the tokens windows get the real usage in place of the estimate */

static void
ngx_http_conductor_reconcile(ngx_http_conductor_node_t *node,
    ngx_http_conductor_ctx_t *ctx)
{
    time_t      now;
    uint64_t    used;
    ngx_uint_t  i;

    now = ngx_time();
    used = ctx->final.found ? (uint64_t) ctx->final.total : 0;

    for (i = 1; i < NGX_HTTP_CONDUCTOR_NLIMITS; i += 2) {

        if (used > ctx->reserved) {
            ngx_http_conductor_window_add(&node->win[i],
                                          ngx_http_conductor_periods[i], now,
                                          used - ctx->reserved);

        } else {
            ngx_http_conductor_window_sub(&node->win[i],
                                          ngx_http_conductor_periods[i], now,
                                          ctx->reserved_at,
                                          ctx->reserved - used);
        }
    }

    ctx->reserved = 0;
}


/* err: an error class, NGX_DECLINED for an answer, NGX_ERROR: tokens only */

static void
ngx_http_conductor_add_totals(ngx_http_conductor_node_t *node,
    ngx_http_conductor_ctx_t *ctx, ngx_int_t err)
{
    ngx_http_conductor_usage_t  *u;

    u = &ctx->final;

    if (err != NGX_ERROR) {
        node->requests++;

        if (err == NGX_DECLINED) {
            node->responses++;
            node->ttfb_sum += ctx->ttfb;

        } else {
            node->errors[err]++;
        }
    }

    if (!u->found) {
        return;
    }

    node->prompt_tokens += u->prompt;
    node->completion_tokens += u->completion;
    node->cached_tokens += u->cached;
    node->cache_creation_tokens += u->cache_creation;
    node->reasoning_tokens += u->reasoning;
    node->cost += ctx->cost;

    if (ctx->estimated) {
        node->estimated++;
    }

    if (!ctx->priced) {
        node->unpriced++;
    }
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
