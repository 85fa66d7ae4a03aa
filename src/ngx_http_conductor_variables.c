
/*
 * Variables: $conductor_* for log_format, and the $conductor_upstream_*
 * ones that conductor_proxy.conf hands to the proxy module.  None is
 * cacheable: the proxy reads them again when a retry re-creates the
 * request for another provider.  No variable holds a secret.
 */


#include "ngx_http_conductor.h"


typedef enum {
    NGX_HTTP_CONDUCTOR_VAR_MODEL = 0,
    NGX_HTTP_CONDUCTOR_VAR_PROVIDER,
    NGX_HTTP_CONDUCTOR_VAR_KEY,
    NGX_HTTP_CONDUCTOR_VAR_UPSTREAM_MODEL,
    NGX_HTTP_CONDUCTOR_VAR_ATTEMPTS,
    NGX_HTTP_CONDUCTOR_VAR_UP_SCHEME,
    NGX_HTTP_CONDUCTOR_VAR_UP_HOST,
    NGX_HTTP_CONDUCTOR_VAR_UP_SNI,
    NGX_HTTP_CONDUCTOR_VAR_PROMPT,
    NGX_HTTP_CONDUCTOR_VAR_COMPLETION,
    NGX_HTTP_CONDUCTOR_VAR_CACHED,
    NGX_HTTP_CONDUCTOR_VAR_TOTAL,
    NGX_HTTP_CONDUCTOR_VAR_COST,
    NGX_HTTP_CONDUCTOR_VAR_TTFB,
    NGX_HTTP_CONDUCTOR_VAR_USAGE_SOURCE,
    NGX_HTTP_CONDUCTOR_VAR_CLIENT
} ngx_http_conductor_var_e;


static ngx_int_t ngx_http_conductor_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_conductor_usage_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_conductor_stream_error_variable(
    ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_conductor_vars[] = {

    { ngx_string("conductor_model"), NULL, ngx_http_conductor_variable,
      NGX_HTTP_CONDUCTOR_VAR_MODEL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("conductor_client"), NULL, ngx_http_conductor_variable,
      NGX_HTTP_CONDUCTOR_VAR_CLIENT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("conductor_provider"), NULL, ngx_http_conductor_variable,
      NGX_HTTP_CONDUCTOR_VAR_PROVIDER, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("conductor_key"), NULL, ngx_http_conductor_variable,
      NGX_HTTP_CONDUCTOR_VAR_KEY, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("conductor_upstream_model"), NULL,
      ngx_http_conductor_variable, NGX_HTTP_CONDUCTOR_VAR_UPSTREAM_MODEL,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("conductor_attempts"), NULL, ngx_http_conductor_variable,
      NGX_HTTP_CONDUCTOR_VAR_ATTEMPTS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("conductor_upstream_scheme"), NULL,
      ngx_http_conductor_variable, NGX_HTTP_CONDUCTOR_VAR_UP_SCHEME,
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("conductor_upstream_host"), NULL,
      ngx_http_conductor_variable, NGX_HTTP_CONDUCTOR_VAR_UP_HOST,
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("conductor_upstream_sni"), NULL,
      ngx_http_conductor_variable, NGX_HTTP_CONDUCTOR_VAR_UP_SNI,
      NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_NOHASH, 0 },

    { ngx_string("conductor_prompt_tokens"), NULL,
      ngx_http_conductor_usage_variable, NGX_HTTP_CONDUCTOR_VAR_PROMPT,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("conductor_completion_tokens"), NULL,
      ngx_http_conductor_usage_variable, NGX_HTTP_CONDUCTOR_VAR_COMPLETION,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("conductor_cached_tokens"), NULL,
      ngx_http_conductor_usage_variable, NGX_HTTP_CONDUCTOR_VAR_CACHED,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("conductor_total_tokens"), NULL,
      ngx_http_conductor_usage_variable, NGX_HTTP_CONDUCTOR_VAR_TOTAL,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("conductor_cost"), NULL,
      ngx_http_conductor_usage_variable, NGX_HTTP_CONDUCTOR_VAR_COST,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("conductor_ttfb"), NULL,
      ngx_http_conductor_usage_variable, NGX_HTTP_CONDUCTOR_VAR_TTFB,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("conductor_usage_source"), NULL,
      ngx_http_conductor_usage_variable,
      NGX_HTTP_CONDUCTOR_VAR_USAGE_SOURCE, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("conductor_stream_error"), NULL,
      ngx_http_conductor_stream_error_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


ngx_int_t
ngx_http_conductor_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_conductor_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_conductor_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                     *p;
    ngx_str_t                   s;
    ngx_http_conductor_ctx_t   *ctx;
    ngx_http_conductor_cand_t  *cand;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_conductor_module);

    if (data == NGX_HTTP_CONDUCTOR_VAR_CLIENT) {
        /* the client's name, never its key */
        if (ctx == NULL || ctx->client == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }

        s = ctx->client->name;
        goto found;
    }

    if (ctx == NULL || ctx->cand == NULL) {
        if (data == NGX_HTTP_CONDUCTOR_VAR_MODEL && ctx && ctx->alias.len) {
            s = ctx->alias;
            goto found;
        }

        /* an empty scheme would make proxy_pass an invalid url */
        if (data == NGX_HTTP_CONDUCTOR_VAR_UP_SCHEME) {
            ngx_str_set(&s, "http");
            goto found;
        }

        v->not_found = 1;
        return NGX_OK;
    }

    /* in the LOG phase the winner, not the last one tried, is reported */
    cand = (ctx->winner && data <= NGX_HTTP_CONDUCTOR_VAR_UPSTREAM_MODEL)
           ? ctx->winner : ctx->cand;

    switch (data) {

    case NGX_HTTP_CONDUCTOR_VAR_MODEL:
        s = ctx->alias;
        break;

    case NGX_HTTP_CONDUCTOR_VAR_PROVIDER:
        s = cand->provider->name;
        break;

    case NGX_HTTP_CONDUCTOR_VAR_KEY:
        s = cand->key->name;
        break;

    case NGX_HTTP_CONDUCTOR_VAR_UPSTREAM_MODEL:
        s = cand->model.len ? cand->model : ctx->alias;
        break;

    case NGX_HTTP_CONDUCTOR_VAR_ATTEMPTS:
        p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        s.data = p;
        s.len = ngx_sprintf(p, "%ui", ctx->attempts) - p;
        break;

    case NGX_HTTP_CONDUCTOR_VAR_UP_SCHEME:
        s = cand->provider->scheme;
        break;

    case NGX_HTTP_CONDUCTOR_VAR_UP_HOST:
        s = cand->provider->host;
        break;

    default: /* NGX_HTTP_CONDUCTOR_VAR_UP_SNI */
        s = cand->provider->sni;
        break;
    }

found:

    v->data = s.data;
    v->len = s.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/*
 * Usage variables, for log_format: empty until the answer has ended (they
 * are meant for the LOG phase) and for answers that used nothing.
 */

static ngx_int_t
ngx_http_conductor_usage_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                      *p;
    int64_t                      n;
    ngx_http_conductor_ctx_t    *ctx;
    ngx_http_conductor_usage_t  *u;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_conductor_module);

    if (ctx == NULL
        || (ctx->attempts == 0 && ctx->account.usage_provider == NULL))
    {
        v->not_found = 1;
        return NGX_OK;
    }

    if (data == NGX_HTTP_CONDUCTOR_VAR_TTFB) {
        if (ctx->ttfb == 0 && ctx->winner == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }

        p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN + 4);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->len = ngx_sprintf(p, "%T.%03M", (time_t) ctx->ttfb / 1000,
                             ctx->ttfb % 1000) - p;
        goto done;
    }

    u = ngx_http_conductor_final_usage(r, ctx);

    if (!u->found) {
        v->not_found = 1;
        return NGX_OK;
    }

    switch (data) {

    case NGX_HTTP_CONDUCTOR_VAR_PROMPT:
        n = u->prompt;
        break;

    case NGX_HTTP_CONDUCTOR_VAR_COMPLETION:
        n = u->completion;
        break;

    case NGX_HTTP_CONDUCTOR_VAR_CACHED:
        n = u->cached;
        break;

    case NGX_HTTP_CONDUCTOR_VAR_TOTAL:
        n = u->total;
        break;

    case NGX_HTTP_CONDUCTOR_VAR_COST:
        if (!ctx->account.priced) {
            v->not_found = 1;
            return NGX_OK;
        }

        p = ngx_pnalloc(r->pool, NGX_HTTP_CONDUCTOR_COST_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        v->len = ngx_http_conductor_money_format(p, ctx->account.cost) - p;
        goto done;

    default: /* NGX_HTTP_CONDUCTOR_VAR_USAGE_SOURCE */
        if (ctx->account.estimated) {
            ngx_str_set(v, "estimated");

        } else {
            ngx_str_set(v, "response");
        }

        v->valid = 1;
        v->no_cacheable = 1;
        v->not_found = 0;
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->len = ngx_sprintf(p, "%L", n) - p;

done:

    v->data = p;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* stream_cut or stream_timeout: a stream the provider did not finish */

static ngx_int_t
ngx_http_conductor_stream_error_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_conductor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_conductor_module);

    if (ctx == NULL || ctx->answer.stream_error == 0) {
        v->not_found = 1;
        return NGX_OK;
    }

    if (ctx->answer.stream_error == NGX_HTTP_CONDUCTOR_ERR_STREAM_TIMEOUT) {
        ngx_str_set(v, "stream_timeout");

    } else {
        ngx_str_set(v, "stream_cut");
    }

    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}
