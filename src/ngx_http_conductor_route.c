
/*
 * The routing handler plans the request: reads the body (the mirror
 * module's pattern), scans the top level of the JSON, works out the edits
 * every attempt shares (members taken out, include_usage added) and the
 * token estimate, resolves the model alias to candidates of the endpoint's
 * dialect, and hands over to the first attempt (attempt.c).  It runs in
 * the PRECONTENT phase, after allow / deny / auth_request have had their
 * say, so nothing is read or reserved for a request that access control
 * refuses.
 */


#include "ngx_http_conductor.h"


static ngx_int_t ngx_http_conductor_usage_only(ngx_http_request_t *r,
    ngx_http_conductor_loc_conf_t *lcf);
static void ngx_http_conductor_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_conductor_route_body(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);
static ngx_int_t ngx_http_conductor_read_body(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx);
static ngx_int_t ngx_http_conductor_read_members(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_loc_conf_t *lcf,
    ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *members, long *routing);
static void ngx_http_conductor_remove_members(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *members, uint64_t *remove);
static ngx_int_t ngx_http_conductor_alias(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_json_member_t *m);
static ngx_int_t ngx_http_conductor_resolve(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_loc_conf_t *lcf);
static ngx_int_t ngx_http_conductor_stream_options(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *members);
static ngx_int_t ngx_http_conductor_routing(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_json_member_t *m);
static ngx_int_t ngx_http_conductor_add_edit(ngx_http_conductor_ctx_t *ctx,
    const u_char *from, const u_char *to, const u_char *data, size_t len);
static ngx_int_t ngx_http_conductor_endpoint_of_uri(ngx_str_t *uri);


ngx_str_t  ngx_http_conductor_endpoint_paths[] = {
    ngx_string("/chat/completions"),
    ngx_string("/completions"),
    ngx_string("/embeddings"),
    ngx_string("/responses"),
    ngx_string("/messages"),
    ngx_null_string
};


static u_char  ngx_http_conductor_include_usage[] = "\"include_usage\":true";


ngx_int_t
ngx_http_conductor_route_handler(ngx_http_request_t *r)
{
    ngx_int_t                       rc, ep;
    ngx_http_conductor_ctx_t       *ctx;
    ngx_http_conductor_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_conductor_module);

    if (r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (!lcf->route) {
        if (lcf->usage_provider && (ctx == NULL || !ctx->routed)) {
            return ngx_http_conductor_usage_only(r, lcf);
        }

        return NGX_DECLINED;
    }

    if (ctx && ctx->routed) {
        return ctx->status;
    }

    /* conductor_auth's ctx, with the client, carries on */
    ctx = ngx_http_conductor_ctx_create(r, &ep);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->routed = 1;
    ctx->strategy = lcf->strategy;

    if (ep == NGX_ERROR) {
        ctx->error = "unsupported path: the gateway serves chat/completions, "
                     "completions, embeddings, responses and messages";
        ctx->status = NGX_HTTP_NOT_FOUND;
        return ctx->status;
    }

    if (r->method != NGX_HTTP_POST) {
        ctx->error = "method not allowed: use POST";
        ctx->status = NGX_HTTP_NOT_ALLOWED;
        return ctx->status;
    }

    ctx->status = NGX_DONE;

    rc = ngx_http_read_client_request_body(r, ngx_http_conductor_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        ctx->status = rc;
        return rc;
    }

    ngx_http_finalize_request(r, NGX_DONE);

    return NGX_DONE;
}


/*
 * conductor_usage: the request goes through as the location's own
 * proxy_pass sends it; only its answer is accounted to the provider.
 */

static ngx_int_t
ngx_http_conductor_usage_only(ngx_http_request_t *r,
    ngx_http_conductor_loc_conf_t *lcf)
{
    ngx_int_t                  ep;
    ngx_http_conductor_ctx_t  *ctx;

    if (ngx_http_conductor_endpoint_of_uri(&r->uri) == NGX_ERROR) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_conductor_ctx_create(r, &ep);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->account.usage_provider = lcf->usage_provider;
    ctx->routed = 1;
    ctx->status = NGX_DECLINED;

    return NGX_DECLINED;
}


static void
ngx_http_conductor_body_handler(ngx_http_request_t *r)
{
    ngx_http_conductor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    ctx->status = ngx_http_conductor_route_body(r, ctx);

    r->preserve_body = 1;

    if (ctx->status == NGX_DONE) {
        /* queued, or waiting for Redis (sync=0): the queue's timer or the
         * answer runs the phases on */
        return;
    }

    r->write_event_handler = ngx_http_core_run_phases;
    ngx_http_core_run_phases(r);
}


static ngx_int_t
ngx_http_conductor_route_body(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    long                               routing;
    ngx_int_t                          rc;
    ngx_uint_t                         n;
    ngx_http_conductor_loc_conf_t     *lcf;
    ngx_http_conductor_json_object_t   obj;
    ngx_http_conductor_json_member_t   members[NGX_HTTP_CONDUCTOR_MAX_MEMBERS];

    rc = ngx_http_conductor_read_body(r, ctx);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_conductor_json_scan_object(ctx->body, ctx->body_len, &obj,
                                             members,
                                             NGX_HTTP_CONDUCTOR_MAX_MEMBERS);

    switch (rc) {

    case NGX_HTTP_CONDUCTOR_JSON_OK:
        break;

    case NGX_HTTP_CONDUCTOR_JSON_NOT_OBJECT:
        ctx->error = "the request body must be a JSON object";
        return NGX_HTTP_BAD_REQUEST;

    case NGX_HTTP_CONDUCTOR_JSON_TOO_DEEP:
        ctx->error = "the request body is nested too deeply";
        return NGX_HTTP_BAD_REQUEST;

    case NGX_HTTP_CONDUCTOR_JSON_TOO_MANY:
        ctx->error = "the request body has too many top-level fields";
        return NGX_HTTP_BAD_REQUEST;

    default:
        ctx->error = "the request body is not valid JSON";
        return NGX_HTTP_BAD_REQUEST;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_http_conductor_module);

    rc = ngx_http_conductor_read_members(r, ctx, lcf, &obj, members,
                                         &routing);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_conductor_resolve(r, ctx, lcf);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->stream
        && (ctx->endpoint == NGX_HTTP_CONDUCTOR_EP_CHAT
            || ctx->endpoint == NGX_HTTP_CONDUCTOR_EP_COMPLETIONS))
    {
        rc = ngx_http_conductor_stream_options(r, ctx, &obj, members);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    n = ctx->ncands < NGX_HTTP_CONDUCTOR_MAX_ATTEMPTS
        ? ctx->ncands : NGX_HTTP_CONDUCTOR_MAX_ATTEMPTS;
    ctx->max_attempts = ngx_min(n, (ngx_uint_t) lcf->retries + 1);

    if (routing != -1 && lcf->allow_override) {
        rc = ngx_http_conductor_routing(r, ctx, &members[routing]);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    rc = ngx_http_conductor_attempt(r, ctx);

    if (rc == NGX_DECLINED) {
        if (lcf->queue_timeout && ngx_http_conductor_enqueue(r, ctx, lcf)
                                  == NGX_OK)
        {
            return NGX_DONE;
        }

        return ngx_http_conductor_refuse(ctx);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* sync=0: the fleet settles the reservation; NGX_DONE: it waits */
    rc = ngx_http_conductor_exact_reserve(r, ctx);

    if (rc == NGX_OK) {
        return NGX_DECLINED;
    }

    return (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR : rc;
}


/*
 * The top-level members the gateway reads: every "model" (all are
 * rewritten; the last is what JSON parsers take), "routing" (taken out,
 * honoured or not), "stream", and the caps on output tokens that make the
 * request's token estimate.
 */

static ngx_int_t
ngx_http_conductor_read_members(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_loc_conf_t *lcf,
    ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *members, long *routing)
{
    long        i, last;
    int64_t     max_tokens;
    ngx_uint_t  nmodels, nremove;
    uint64_t    models[NGX_HTTP_CONDUCTOR_MAX_MEMBERS / 64];
    uint64_t    remove[NGX_HTTP_CONDUCTOR_MAX_MEMBERS / 64];

    ngx_memzero(models, sizeof(models));
    ngx_memzero(remove, sizeof(remove));

    last = -1;
    *routing = -1;
    max_tokens = -1;
    nmodels = 0;
    nremove = 0;

    for (i = 0; i < (long) obj->n; i++) {

        /*
         * most members are none of ours: the length of a key without
         * escapes says so (model, stream, routing, max_tokens,
         * max_output_tokens, max_completion_tokens), or its first byte
         */
        if (!members[i].key_escaped) {
            switch (members[i].key_len) {
            case 5: case 6: case 7: case 10: case 17: case 21:
                break;
            default:
                continue;
            }
        }

        switch (members[i].key_len ? members[i].key[0] : 0) {
        case 'm': case 'r': case 's': case '\\':
            break;
        default:
            continue;
        }

        if (ngx_http_conductor_json_key_is(&members[i], "model")) {

            if (members[i].type != NGX_HTTP_CONDUCTOR_JSON_STRING) {
                ctx->error = "\"model\" must be a string";
                return NGX_HTTP_BAD_REQUEST;
            }

            models[i / 64] |= (uint64_t) 1 << (i % 64);
            nmodels++;
            last = i;
            continue;
        }

        if (ngx_http_conductor_json_key_is(&members[i], "routing")) {
            remove[i / 64] |= (uint64_t) 1 << (i % 64);
            nremove++;
            *routing = i;
            continue;
        }

        if (ngx_http_conductor_json_key_is(&members[i], "stream")) {
            ctx->stream = (members[i].type == NGX_HTTP_CONDUCTOR_JSON_TRUE);
            continue;
        }

        if (members[i].type == NGX_HTTP_CONDUCTOR_JSON_NUMBER
            && (ngx_http_conductor_json_key_is(&members[i], "max_tokens")
                || ngx_http_conductor_json_key_is(&members[i],
                                                  "max_completion_tokens")
                || ngx_http_conductor_json_key_is(&members[i],
                                                  "max_output_tokens")))
        {
            (void) ngx_http_conductor_json_uint(members[i].value,
                                                members[i].value_len,
                                                &max_tokens);
        }
    }

    /* what the request may use: four bytes a token in, at most max_tokens
     * out, else what conductor_estimate assumes (embeddings answer none);
     * the LOG phase puts the real usage in its place */
    if (max_tokens < 0) {
        max_tokens = (ctx->endpoint == NGX_HTTP_CONDUCTOR_EP_EMBEDDINGS)
                     ? 0 : (int64_t) lcf->completion_estimate;
    }

    ctx->estimate_out = (uint64_t) ngx_min(max_tokens, (int64_t) 1000000000);
    ctx->estimate = (ctx->body_len + 3) / 4 + ctx->estimate_out;

    if (last == -1) {
        ctx->error = "\"model\" is required";
        return NGX_HTTP_BAD_REQUEST;
    }

    ctx->model_spans = ngx_palloc(r->pool, nmodels * sizeof(ngx_str_t));

    /* one edit per run of removed members, one for stream_options */
    ctx->edits = ngx_palloc(r->pool, (nremove + 1)
                                     * sizeof(ngx_http_conductor_json_edit_t));

    if (ctx->model_spans == NULL || ctx->edits == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->edits_max = nremove + 1;

    for (i = 0; i < (long) obj->n; i++) {
        if (models[i / 64] & ((uint64_t) 1 << (i % 64))) {
            ctx->model_spans[ctx->nmodel_spans].data =
                                                   (u_char *) members[i].value;
            ctx->model_spans[ctx->nmodel_spans].len = members[i].value_len;
            ctx->nmodel_spans++;
        }
    }

    if (nremove) {
        ngx_http_conductor_remove_members(ctx, obj, members, remove);
    }

    return ngx_http_conductor_alias(r, ctx, &members[last]);
}


/*
 * Members taken out of the body, as one edit per run of neighbours: a run
 * with a member after it goes with its commas up to that member's key; a
 * run that ends the object goes from the end of the value before it.  So
 * no comma is left dangling whichever members go.
 */

static void
ngx_http_conductor_remove_members(ngx_http_conductor_ctx_t *ctx,
    ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *members, uint64_t *remove)
{
    size_t                           i, a, n;
    ngx_http_conductor_json_edit_t  *e;

    n = obj->n;

    for (i = 0; i < n; /* void */ ) {

        if (!(remove[i / 64] & ((uint64_t) 1 << (i % 64)))) {
            i++;
            continue;
        }

        for (a = i; i < n && (remove[i / 64] & ((uint64_t) 1 << (i % 64)));
             i++)
        {
            /* void */
        }

        e = &ctx->edits[ctx->nedits++];
        e->data = NULL;
        e->len = 0;

        if (i < n) {
            e->from = members[a].start;
            e->to = members[i].start;

        } else if (a > 0) {
            e->from = members[a - 1].value + members[a - 1].value_len;
            e->to = members[n - 1].value + members[n - 1].value_len;

        } else {
            /* every member: "{}" stays */
            e->from = obj->open + 1;
            e->to = obj->close;
        }
    }
}


/* the alias the client asked for, as a string of its own */

static ngx_int_t
ngx_http_conductor_alias(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_json_member_t *m)
{
    long     n;
    u_char  *alias;

    alias = ngx_pnalloc(r->pool, m->value_len);
    if (alias == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = ngx_http_conductor_json_string_decode(m->value, m->value_len, alias,
                                              m->value_len);
    if (n <= 0) {
        ctx->error = "\"model\" must be a non-empty string";
        return NGX_HTTP_BAD_REQUEST;
    }

    ctx->alias.data = alias;
    ctx->alias.len = n;

    return NGX_OK;
}


/*
 * The alias's candidates for the endpoint's dialect: matched exactly as
 * configured; an unknown name goes through unchanged (as Conductor does)
 * or is refused (conductor_unknown_models reject).
 */

static ngx_int_t
ngx_http_conductor_resolve(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_loc_conf_t *lcf)
{
    ngx_uint_t                       key;
    ngx_http_conductor_model_t      *m;
    ngx_http_conductor_main_conf_t  *cmcf;
    u_char                           lc[NGX_HTTP_CONDUCTOR_ALIAS_MAX];

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

    m = NULL;

    if (ctx->alias.len <= NGX_HTTP_CONDUCTOR_ALIAS_MAX) {
        /* the hash holds lowercased names; the alias must match exactly */
        key = ngx_hash_strlow(lc, ctx->alias.data, ctx->alias.len);
        m = ngx_hash_find(&cmcf->model_hash, key, lc, ctx->alias.len);

        if (m && ngx_strncmp(m->name.data, ctx->alias.data, ctx->alias.len)
                 != 0)
        {
            m = NULL;
        }
    }

    /* a client limited to some models is told so before anything else
     * is said of the model */
    if (ctx->client && ctx->client->models
        && !ngx_http_conductor_client_may_use(ctx->client, m))
    {
        ctx->error = ngx_http_conductor_error_message(r,
                         "client \"%V\" may not use the model \"%V\"",
                         &ctx->client->name, &ctx->alias);
        return NGX_HTTP_FORBIDDEN;
    }

    if (m == NULL) {
        if (lcf->unknown_reject) {
            ctx->error = "the model does not exist";
            ctx->error_code = "model_not_found";
            return NGX_HTTP_NOT_FOUND;
        }

        m = &cmcf->passthrough[ngx_http_conductor_dialect(ctx)];
    }

    ctx->model = m;
    ctx->cands = m->cands[ngx_http_conductor_dialect(ctx)].elts;
    ctx->ncands = m->cands[ngx_http_conductor_dialect(ctx)].nelts;

    if (ctx->ncands == 0) {
        ctx->error = "no provider serves this model for this API";
        ctx->error_code = "model_not_found";
        return NGX_HTTP_NOT_FOUND;
    }

    return NGX_OK;
}


/*
 * The request's own "routing" (the Conduit seed): a strategy, a provider,
 * and whether to fall back at all.  Unknown names are the client's error.
 */

static ngx_int_t
ngx_http_conductor_routing(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_json_member_t *m)
{
    long                               i, len;
    ngx_str_t                          name;
    ngx_uint_t                         k;
    ngx_http_conductor_main_conf_t    *cmcf;
    ngx_http_conductor_json_object_t   obj;
    ngx_http_conductor_json_member_t   rm[8];
    u_char                             buf[64];

    if (m->type != NGX_HTTP_CONDUCTOR_JSON_OBJECT) {
        return NGX_OK;
    }

    if (ngx_http_conductor_json_scan_object(m->value, m->value_len, &obj, rm,
                                            8)
        != NGX_HTTP_CONDUCTOR_JSON_OK)
    {
        ctx->error = "\"routing\" has too many fields";
        return NGX_HTTP_BAD_REQUEST;
    }

    for (i = 0; i < (long) obj.n; i++) {

        if (ngx_http_conductor_json_key_is(&rm[i], "fallback_enabled")) {
            if (rm[i].type == NGX_HTTP_CONDUCTOR_JSON_FALSE) {
                ctx->max_attempts = 1;
            }

            continue;
        }

        if (rm[i].type != NGX_HTTP_CONDUCTOR_JSON_STRING) {
            continue;
        }

        len = ngx_http_conductor_json_string_decode(rm[i].value,
                                                    rm[i].value_len, buf,
                                                    sizeof(buf));
        name.data = buf;
        name.len = len > 0 ? len : 0;

        if (ngx_http_conductor_json_key_is(&rm[i], "strategy")) {

            for (k = 0; ngx_http_conductor_strategy_names[k].len; k++) {
                if (ngx_http_conductor_strategy_names[k].len == name.len
                    && ngx_strncmp(ngx_http_conductor_strategy_names[k].data,
                                   name.data, name.len)
                       == 0)
                {
                    break;
                }
            }

            if (ngx_http_conductor_strategy_names[k].len == 0) {
                ctx->error = "unknown \"routing.strategy\"";
                return NGX_HTTP_BAD_REQUEST;
            }

            ctx->strategy = k;
            continue;
        }

        if (ngx_http_conductor_json_key_is(&rm[i], "provider")) {
            cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);

            ctx->routing_provider = ngx_http_conductor_find_provider(cmcf,
                                                                     &name);
            if (ctx->routing_provider == NULL) {
                ctx->error = "unknown \"routing.provider\"";
                return NGX_HTTP_BAD_REQUEST;
            }

            for (k = 0; k < ctx->ncands; k++) {
                if (ctx->cands[k].provider == ctx->routing_provider) {
                    break;
                }
            }

            if (k == ctx->ncands) {
                ctx->error = "\"routing.provider\" does not serve this model "
                             "for this API";
                return NGX_HTTP_BAD_REQUEST;
            }
        }
    }

    return NGX_OK;
}


/* the body as one span: in memory as it is, or gathered from a temp file */

static ngx_int_t
ngx_http_conductor_read_body(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx)
{
    u_char       *p;
    off_t         len;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        ctx->error = "the request body is empty";
        return NGX_HTTP_BAD_REQUEST;
    }

    cl = r->request_body->bufs;

    if (cl->next == NULL && !cl->buf->in_file) {
        ctx->body = cl->buf->pos;
        ctx->body_len = cl->buf->last - cl->buf->pos;

    } else {
        len = 0;

        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            len += ngx_buf_size(cl->buf);
        }

        ctx->body = ngx_pnalloc(r->pool, len ? len : 1);
        if (ctx->body == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ctx->body;

        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            b = cl->buf;

            if (b->in_file) {
                /* the temp file was just written: it is in the page cache */
                n = ngx_read_file(b->file, p, b->file_last - b->file_pos,
                                  b->file_pos);

                if (n != b->file_last - b->file_pos) {
                    return NGX_HTTP_INTERNAL_SERVER_ERROR;
                }

                p += n;
                continue;
            }

            p = ngx_cpymem(p, b->pos, b->last - b->pos);
        }

        ctx->body_len = p - ctx->body;
    }

    if (ctx->body_len == 0) {
        ctx->error = "the request body is empty";
        return NGX_HTTP_BAD_REQUEST;
    }

    return NGX_OK;
}


/*
 * Usage of a chat stream comes only with stream_options.include_usage: the
 * gateway asks for it, and remembers whether the client had, so the extra
 * chunk can be taken out of what a client that did not ask receives.
 */

static ngx_int_t
ngx_http_conductor_stream_options(ngx_http_request_t *r,
    ngx_http_conductor_ctx_t *ctx, ngx_http_conductor_json_object_t *obj,
    ngx_http_conductor_json_member_t *members)
{
    long                               i, j;
    size_t                             len;
    u_char                            *p;
    ngx_int_t                          rc;
    ngx_http_conductor_json_object_t   so;
    ngx_http_conductor_json_member_t   som[16];

    i = ngx_http_conductor_json_find(members, obj->n, "stream_options");

    if (i == -1) {
        len = sizeof(",\"stream_options\":{}") - 1
              + sizeof(ngx_http_conductor_include_usage) - 1;

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(p, ",\"stream_options\":{%s}",
                    ngx_http_conductor_include_usage);

        rc = ngx_http_conductor_add_edit(ctx, obj->close, obj->close, p, len);
        goto done;
    }

    if (members[i].type == NGX_HTTP_CONDUCTOR_JSON_NULL) {
        len = sizeof("{}") - 1 + sizeof(ngx_http_conductor_include_usage) - 1;

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(p, "{%s}", ngx_http_conductor_include_usage);

        rc = ngx_http_conductor_add_edit(ctx, members[i].value,
                                         members[i].value
                                         + members[i].value_len, p, len);
        goto done;
    }

    if (members[i].type != NGX_HTTP_CONDUCTOR_JSON_OBJECT) {
        /* the provider answers that error in its own words */
        return NGX_OK;
    }

    if (ngx_http_conductor_json_scan_object(members[i].value,
                                            members[i].value_len, &so, som,
                                            16)
        != NGX_HTTP_CONDUCTOR_JSON_OK)
    {
        ctx->error = "\"stream_options\" has too many fields";
        return NGX_HTTP_BAD_REQUEST;
    }

    j = ngx_http_conductor_json_find(som, so.n, "include_usage");

    if (j != -1 && som[j].type == NGX_HTTP_CONDUCTOR_JSON_TRUE) {
        ctx->client_usage = 1;
        return NGX_OK;
    }

    if (j != -1) {
        rc = ngx_http_conductor_add_edit(ctx, som[j].value,
                                         som[j].value + som[j].value_len,
                                         (u_char *) "true", 4);
        goto done;
    }

    len = sizeof(ngx_http_conductor_include_usage) - 1 + (so.n ? 1 : 0);

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(p, "%s%s", ngx_http_conductor_include_usage, so.n ? "," : "");

    rc = ngx_http_conductor_add_edit(ctx, so.open + 1, so.open + 1, p, len);

done:

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->added_usage = 1;

    return NGX_OK;
}


/* edits are kept in the order of their place in the body */

static ngx_int_t
ngx_http_conductor_add_edit(ngx_http_conductor_ctx_t *ctx, const u_char *from,
    const u_char *to, const u_char *data, size_t len)
{
    ngx_uint_t                       i;
    ngx_http_conductor_json_edit_t  *e;

    if (ctx->nedits == ctx->edits_max) {
        return NGX_ERROR;
    }

    for (i = ctx->nedits; i > 0 && ctx->edits[i - 1].from > from; i--) {
        /* void */
    }

    ngx_memmove(&ctx->edits[i + 1], &ctx->edits[i],
                (ctx->nedits - i) * sizeof(ngx_http_conductor_json_edit_t));

    e = &ctx->edits[i];
    e->from = from;
    e->to = to;
    e->data = data;
    e->len = len;

    ctx->nedits++;

    return NGX_OK;
}


static ngx_int_t
ngx_http_conductor_endpoint_of_uri(ngx_str_t *uri)
{
    ngx_uint_t   i;
    ngx_str_t   *ep;

    for (i = 0; ngx_http_conductor_endpoint_paths[i].len; i++) {
        ep = &ngx_http_conductor_endpoint_paths[i];

        if (uri->len >= ep->len
            && ngx_strncmp(uri->data + uri->len - ep->len, ep->data, ep->len)
               == 0)
        {
            return i;
        }
    }

    return NGX_ERROR;
}


/*
 * The request's context, made once by whichever runs first (the route,
 * conductor_usage, or the header filter for a request refused before
 * them): the endpoint of its path (*ep NGX_ERROR: none of the gateway's;
 * its errors are then in OpenAI's dialect).
 */

ngx_http_conductor_ctx_t *
ngx_http_conductor_ctx_create(ngx_http_request_t *r, ngx_int_t *ep)
{
    ngx_int_t                  e;
    ngx_http_conductor_ctx_t  *ctx;

    e = ngx_http_conductor_endpoint_of_uri(&r->uri);

    if (ep) {
        *ep = e;
    }

    /* made by conductor_auth in the ACCESS phase, or now */
    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (ctx) {
        return ctx;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_conductor_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    ctx->request = r;
    ctx->start = ngx_current_msec;
    ctx->endpoint = (e == NGX_ERROR) ? NGX_HTTP_CONDUCTOR_EP_CHAT : e;

    ngx_http_set_ctx(r, ctx, ngx_http_conductor_module);

    return ctx;
}
