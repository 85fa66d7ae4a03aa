
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
    NGX_HTTP_CONDUCTOR_VAR_UP_SNI
} ngx_http_conductor_var_e;


static ngx_int_t ngx_http_conductor_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


static ngx_http_variable_t  ngx_http_conductor_vars[] = {

    { ngx_string("conductor_model"), NULL, ngx_http_conductor_variable,
      NGX_HTTP_CONDUCTOR_VAR_MODEL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

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
