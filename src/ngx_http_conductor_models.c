
/*
 * conductor_models: the aliases, in the OpenAI list format, or in
 * Anthropic's when the client speaks it (an anthropic-version header).
 */


#include "ngx_http_conductor.h"


static ngx_int_t ngx_http_conductor_models_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_http_conductor_is_anthropic(ngx_http_request_t *r);


char *
ngx_http_conductor_models(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_conductor_models_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_conductor_models_handler(ngx_http_request_t *r)
{
    u_char                           *p;
    size_t                            len;
    ngx_int_t                         rc;
    ngx_buf_t                        *b;
    ngx_uint_t                        i, n, anthropic;
    ngx_chain_t                       out;
    ngx_http_conductor_ctx_t         *ctx;
    ngx_http_conductor_model_t      **m;
    ngx_http_conductor_main_conf_t   *cmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);
    anthropic = ngx_http_conductor_is_anthropic(r);

    /* a client limited to some models sees only those */
    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (ctx && ctx->client && ctx->client->models) {
        m = ctx->client->models->elts;
        n = ctx->client->models->nelts;

    } else {
        m = cmcf->models.elts;
        n = cmcf->models.nelts;
    }

    len = sizeof("{\"object\":\"list\",\"data\":[],\"has_more\":false,"
                 "\"first_id\":null,\"last_id\":null}\n");

    for (i = 0; i < n; i++) {
        len += 2 * ngx_http_conductor_json_escape_len(m[i]->name.data,
                                                      m[i]->name.len)
               + sizeof(",{\"type\":\"model\",\"id\":,\"display_name\":,"
                        "\"created_at\":\"1970-01-01T00:00:00Z\","
                        "\"object\":\"model\",\"created\":0,"
                        "\"owned_by\":\"conductor\"}");
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = b->last;
    p = ngx_http_conductor_cpy(p, "{");

    if (!anthropic) {
        p = ngx_http_conductor_cpy(p, "\"object\":\"list\",");
    }

    p = ngx_http_conductor_cpy(p, "\"data\":[");

    for (i = 0; i < n; i++) {

        if (i) {
            *p++ = ',';
        }

        if (anthropic) {
            p = ngx_http_conductor_cpy(p, "{\"type\":\"model\",\"id\":");
            p = ngx_http_conductor_json_escape(p, m[i]->name.data,
                                               m[i]->name.len);
            p = ngx_http_conductor_cpy(p, ",\"display_name\":");
            p = ngx_http_conductor_json_escape(p, m[i]->name.data,
                                               m[i]->name.len);
            p = ngx_http_conductor_cpy(p,
                                   ",\"created_at\":\"1970-01-01T00:00:00Z\"}");
            continue;
        }

        p = ngx_http_conductor_cpy(p, "{\"id\":");
        p = ngx_http_conductor_json_escape(p, m[i]->name.data,
                                           m[i]->name.len);
        p = ngx_http_conductor_cpy(p, ",\"object\":\"model\",\"created\":0,"
                          "\"owned_by\":\"conductor\"}");
    }

    *p++ = ']';

    if (anthropic) {
        p = ngx_sprintf(p, ",\"has_more\":false,\"first_id\":%s,"
                           "\"last_id\":%s",
                        "null", "null");
    }

    p = ngx_http_conductor_cpy(p, "}\n");

    b->last = p;
    b->last_buf = (r == r->main);
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_uint_t
ngx_http_conductor_is_anthropic(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

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

        if (h[i].key.len == sizeof("anthropic-version") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "anthropic-version",
                               sizeof("anthropic-version") - 1)
               == 0)
        {
            return 1;
        }
    }

    return 0;
}
