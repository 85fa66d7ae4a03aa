
/*
 * The upstream balancer: "upstream conductor_backend { conductor_balancer; }"
 * connects each attempt to the provider of the candidate picked for it.  A
 * retry picks the next candidate and re-creates the request for it (new
 * body, path, key and Host) before connecting, so failover happens inside
 * the one client request with every proxy feature kept.
 *
 * Idle connections are cached per provider, not per address as the stock
 * keepalive module does: two providers behind one address must never share
 * a TLS connection opened with the other's name.
 */


#include "ngx_http_conductor.h"


typedef struct {
    ngx_msec_t                           retry_after;
    int64_t                              remaining_requests;
    int64_t                              remaining_tokens;
    uint64_t                             exhausted_until;  /* epoch ms */
} ngx_http_conductor_limits_t;


typedef struct {
    ngx_http_conductor_balancer_conf_t  *conf;
    ngx_queue_t                          queue;
    ngx_connection_t                    *connection;
    ngx_http_conductor_provider_t       *provider;
    socklen_t                            socklen;
    ngx_sockaddr_t                       sockaddr;
} ngx_http_conductor_cache_t;


static ngx_int_t ngx_http_conductor_balancer_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_conductor_balancer_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us);
static ngx_int_t ngx_http_conductor_balancer_get(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_conductor_balancer_free(ngx_peer_connection_t *pc,
    void *data, ngx_uint_t state);
static ngx_int_t ngx_http_conductor_error_class(ngx_peer_connection_t *pc,
    ngx_uint_t state, ngx_uint_t status);
static void ngx_http_conductor_read_limits(ngx_http_request_t *r,
    ngx_uint_t status, ngx_http_conductor_limits_t *lim);
static ngx_uint_t ngx_http_conductor_header_is(ngx_str_t *key,
    const char *name);
static uint64_t ngx_http_conductor_parse_duration(ngx_str_t *v);
static uint64_t ngx_http_conductor_parse_rfc3339(ngx_str_t *v,
    uint64_t now_ms);
static ngx_int_t ngx_http_conductor_add_auth(ngx_http_request_t *r,
    ngx_http_conductor_cand_t *cand);
static ngx_int_t ngx_http_conductor_cache_get(ngx_peer_connection_t *pc,
    ngx_http_conductor_ctx_t *ctx);
static void ngx_http_conductor_cache_put(ngx_peer_connection_t *pc,
    ngx_http_conductor_ctx_t *ctx, ngx_uint_t state);
static void ngx_http_conductor_cache_dummy_handler(ngx_event_t *ev);
static void ngx_http_conductor_cache_close_handler(ngx_event_t *ev);
static void ngx_http_conductor_cache_close(ngx_connection_t *c);

#if (NGX_HTTP_SSL)
static ngx_int_t ngx_http_conductor_set_session(ngx_peer_connection_t *pc,
    void *data);
static void ngx_http_conductor_save_session(ngx_peer_connection_t *pc,
    void *data);
#endif


char *
ngx_http_conductor_balancer(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_conductor_balancer_conf_t *bcf = conf;

    ngx_int_t                      rc;
    ngx_str_t                     *value;
    ngx_uint_t                     i;
    ngx_http_upstream_server_t    *us;
    ngx_http_upstream_srv_conf_t  *uscf;

    uscf = ngx_http_conf_get_module_srv_conf(cf, ngx_http_upstream_module);

    if (uscf->peer.init_upstream == ngx_http_conductor_balancer_init_upstream)
    {
        return "is duplicate";
    }

    if (uscf->peer.init_upstream) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "load balancing method redefined");
    }

    bcf->keepalive = 32;
    bcf->keepalive_timeout = 60000;
    bcf->keepalive_requests = 1000;

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 11
            && ngx_strncmp(value[i].data, "keepalive=0", 11) == 0)
        {
            bcf->keepalive = 0;
            continue;
        }

        rc = ngx_http_conductor_param_num(&value[i], "keepalive",
                                          &bcf->keepalive);
        if (rc == NGX_DECLINED) {
            rc = ngx_http_conductor_param_msec(&value[i], "keepalive_timeout",
                                               &bcf->keepalive_timeout);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_http_conductor_param_num(&value[i], "keepalive_requests",
                                              &bcf->keepalive_requests);
        }

        if (rc != NGX_OK) {
            goto invalid;
        }
    }

    uscf->peer.init_upstream = ngx_http_conductor_balancer_init_upstream;

    /* nginx refuses an upstream block without a server: the providers are
     * the servers, so one placeholder stands in for them */
    if (uscf->servers->nelts == 0) {
        us = ngx_array_push(uscf->servers);
        if (us == NULL) {
            return NGX_CONF_ERROR;
        }

        ngx_memzero(us, sizeof(ngx_http_upstream_server_t));
        ngx_str_set(&us->name, "conductor");
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\": expected keepalive=N, "
                       "keepalive_timeout=TIME or keepalive_requests=N",
                       &value[i]);
    return NGX_CONF_ERROR;
}


static ngx_int_t
ngx_http_conductor_balancer_init_upstream(ngx_conf_t *cf,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_uint_t                           i;
    ngx_http_conductor_cache_t          *cached;
    ngx_http_conductor_balancer_conf_t  *bcf;

    if (us->shm_zone) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"zone\" cannot be used with conductor_balancer in "
                      "upstream \"%V\" in %s:%ui", &us->host, us->file_name,
                      us->line);
        return NGX_ERROR;
    }

    if (us->peer.init_upstream != ngx_http_conductor_balancer_init_upstream) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"keepalive\" cannot wrap conductor_balancer in "
                      "upstream \"%V\" in %s:%ui: it would share connections "
                      "between providers; use conductor_balancer "
                      "keepalive=N", &us->host, us->file_name, us->line);
        return NGX_ERROR;
    }

    bcf = ngx_http_conf_upstream_srv_conf(us, ngx_http_conductor_module);

    us->peer.init = ngx_http_conductor_balancer_init_peer;

    ngx_queue_init(&bcf->cache);
    ngx_queue_init(&bcf->free);

    if (bcf->keepalive == 0) {
        return NGX_OK;
    }

    cached = ngx_pcalloc(cf->pool,
                         sizeof(ngx_http_conductor_cache_t) * bcf->keepalive);
    if (cached == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < bcf->keepalive; i++) {
        ngx_queue_insert_head(&bcf->free, &cached[i].queue);
        cached[i].conf = bcf;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_conductor_balancer_init_peer(ngx_http_request_t *r,
    ngx_http_upstream_srv_conf_t *us)
{
    ngx_http_conductor_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_conductor_module);

    if (ctx == NULL || ctx->cand == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "upstream \"%V\" uses conductor_balancer, but the "
                      "location has no conductor_route", &us->host);
        return NGX_ERROR;
    }

    ctx->bcf = ngx_http_conf_upstream_srv_conf(us, ngx_http_conductor_module);

    /* the first attempt's request was created before the balancer ran */
    if (ngx_http_conductor_add_auth(r, ctx->cand) != NGX_OK) {
        return NGX_ERROR;
    }

    r->upstream->peer.data = ctx;
    r->upstream->peer.get = ngx_http_conductor_balancer_get;
    r->upstream->peer.free = ngx_http_conductor_balancer_free;
    r->upstream->peer.tries = ctx->max_attempts;

#if (NGX_HTTP_SSL)
    r->upstream->peer.set_session = ngx_http_conductor_set_session;
    r->upstream->peer.save_session = ngx_http_conductor_save_session;
#endif

    return NGX_OK;
}


static ngx_int_t
ngx_http_conductor_balancer_get(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_conductor_ctx_t *ctx = data;

    ngx_addr_t                     *addr;
    ngx_http_request_t             *r;
    ngx_http_upstream_t            *u;
    ngx_http_conductor_cand_t      *cand;
    ngx_http_conductor_provider_t  *p;

    r = ctx->request;
    u = r->upstream;

    /* keepalive's reuse flag would otherwise grant endless extra tries */
    pc->cached = 0;
    pc->connection = NULL;

    if (++ctx->gets > 2 * NGX_HTTP_CONDUCTOR_MAX_ATTEMPTS) {
        return NGX_BUSY;
    }

    if (ctx->gets > 1 && !ctx->retry_same) {

        cand = ngx_http_conductor_pick(r, ctx);
        if (cand == NULL) {
            return NGX_BUSY;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "conductor: attempt %ui with key \"%V\"",
                       ctx->attempts, &cand->key->name);

        if (ngx_http_conductor_set_candidate(r, ctx, cand) != NGX_OK) {
            return NGX_ERROR;
        }

        /* the lua balancer's recreate_request: the proxy builds the
         * request anew from the body, path and variables just set */
        u->request_bufs = r->request_body->bufs;

        if (u->create_request(r) != NGX_OK
            || ngx_http_conductor_add_auth(r, cand) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ctx->retry_same = 0;

    cand = ctx->cand;
    p = cand->provider;

#if (NGX_HTTP_SSL)
    if (p->ssl && u->conf->ssl == NULL) {
        ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                      "provider \"%V\" is https, but proxy_pass of this "
                      "location is neither https nor a variable: include "
                      "conductor_proxy.conf", &p->name);
        return NGX_ERROR;
    }

    u->ssl = p->ssl;
#endif

    addr = &p->addrs[ctx->attempts % p->naddrs];

    pc->sockaddr = addr->sockaddr;
    pc->socklen = addr->socklen;
    pc->name = &addr->name;

    /* the last candidate's answer, even a 429, is the client's answer */
    if (!ngx_http_conductor_has_room(r, ctx)) {
        pc->tries = 1;
    }

    if (ngx_http_conductor_cache_get(pc, ctx) == NGX_DONE) {
        return NGX_DONE;
    }

    return NGX_OK;
}


static void
ngx_http_conductor_balancer_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_conductor_ctx_t *ctx = data;

    ngx_int_t                        err;
    uint64_t                         now_ms;
    ngx_msec_t                       ttfb, cooldown;
    ngx_uint_t                       status, i;
    ngx_http_request_t              *r;
    ngx_http_upstream_state_t       *us;
    ngx_http_conductor_node_t       *kn, *pn;
    ngx_http_conductor_limits_t      lim;
    ngx_http_conductor_main_conf_t  *cmcf;

    r = ctx->request;
    us = r->upstream->state;
    status = us ? us->status : 0;

    /* a kept-alive connection the provider had closed: same key again */
    if ((state & NGX_PEER_FAILED) && pc->cached && status == 0) {
        ctx->retry_same = 1;
        pc->tries--;
        return;
    }

    err = ngx_http_conductor_error_class(pc, state, status);

    ngx_http_conductor_read_limits(r, status, &lim);

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_conductor_module);
    kn = ctx->cand->key->node;
    pn = ctx->cand->provider->node;
    now_ms = ngx_http_conductor_now_ms();

    ngx_http_conductor_shm_lock(cmcf);

    if (ctx->inflight) {
        kn->inflight--;
        ctx->inflight = 0;
    }

    if (lim.remaining_requests >= 0) {
        kn->remaining_requests = lim.remaining_requests;
    }

    if (lim.remaining_tokens >= 0) {
        kn->remaining_tokens = lim.remaining_tokens;
    }

    /* the provider says the key is spent until its reset */
    if (lim.exhausted_until > kn->cooldown_until) {
        kn->cooldown_until = lim.exhausted_until;
    }

    if (err == NGX_DECLINED) {

        if (state == 0 && ctx->observe == NGX_HTTP_CONDUCTOR_OBSERVE_SSE) {
            /* a stream may still be cut: its end decides, in the LOG phase */
            ctx->outcome_pending = 1;

        } else {
            ngx_http_conductor_breaker_pass(kn, pn);
        }

        kn->responses++;

        ttfb = (us && us->header_time != (ngx_msec_t) -1) ? us->header_time
                                                            : 0;
        kn->ttfb_sum += ttfb;

        /* an EWMA of 1/5: recent answers count, one slow answer does not
         * decide alone; 0 stays "never measured" */
        ttfb = ttfb ? ttfb : 1;
        kn->ttfb_ewma = kn->ttfb_ewma ? (kn->ttfb_ewma * 4 + ttfb) / 5 : ttfb;

    } else {
        kn->errors[err]++;

        /* no tokens were used: the attempt's estimate is given back */
        for (i = 1; i < NGX_HTTP_CONDUCTOR_NLIMITS; i += 2) {
            ngx_http_conductor_window_sub(&kn->win[i],
                                          ngx_http_conductor_periods[i],
                                          ngx_time(), ctx->reserved_at,
                                          ctx->reserved);
        }

        ctx->reserved = 0;

        if (status == NGX_HTTP_TOO_MANY_REQUESTS
            || (status == NGX_HTTP_SERVICE_UNAVAILABLE && lim.retry_after))
        {
            /* told when: Retry-After and its kin; else backing off */
            cooldown = lim.retry_after;

            if (cooldown == 0) {
                cooldown = 1000 << ngx_min(kn->backoff, 6);
                kn->backoff++;
            }

            kn->cooldown_until = ngx_max(kn->cooldown_until,
                                         now_ms + cooldown);

        } else if (status == NGX_HTTP_UNAUTHORIZED
                   || status == NGX_HTTP_FORBIDDEN)
        {
            kn->disabled = now_ms;

        } else if (err != NGX_HTTP_CONDUCTOR_ERR_4XX) {
            ngx_http_conductor_breaker(cmcf, kn, now_ms);

            if (err != NGX_HTTP_CONDUCTOR_ERR_5XX) {
                /* an unreachable provider fails every one of its keys */
                ngx_http_conductor_breaker(cmcf, pn, now_ms);
            }
        }
    }

    ngx_http_conductor_shm_unlock(cmcf);

    if (status == NGX_HTTP_UNAUTHORIZED || status == NGX_HTTP_FORBIDDEN) {
        ngx_log_error(NGX_LOG_WARN, pc->log, 0,
                      "conductor: key \"%V\" of provider \"%V\" answered "
                      "%ui: disabled until the configuration is reloaded",
                      &ctx->cand->key->name, &ctx->cand->provider->name,
                      status);
    }

    /* state 0: this attempt's answer is the client's (a retried 403/404
     * comes as NGX_PEER_NEXT) */
    if (state == 0) {
        ctx->winner = ctx->cand;
    }

    ngx_http_conductor_cache_put(pc, ctx, state);

    pc->tries--;
}


/* consecutive failures open the breaker; a failed probe opens it again */

void
ngx_http_conductor_breaker(ngx_http_conductor_main_conf_t *cmcf,
    ngx_http_conductor_node_t *node, uint64_t now_ms)
{
    node->failures++;

    if (node->breaker == NGX_HTTP_CONDUCTOR_HALF_OPEN
        || node->failures >= cmcf->breaker_failures)
    {
        node->breaker = NGX_HTTP_CONDUCTOR_OPEN;
        node->cooldown_until = ngx_max(node->cooldown_until,
                                       now_ms + cmcf->breaker_timeout);
    }
}


/* an answer: the key's and its provider's failures are over */

void
ngx_http_conductor_breaker_pass(ngx_http_conductor_node_t *key,
    ngx_http_conductor_node_t *provider)
{
    key->failures = 0;
    key->backoff = 0;
    key->breaker = NGX_HTTP_CONDUCTOR_CLOSED;
    provider->failures = 0;
    provider->breaker = NGX_HTTP_CONDUCTOR_CLOSED;
}


/*
 * What the provider's headers say of the key's limits: Retry-After
 * (seconds or a date), retry-after-ms, x-ratelimit-remaining-* and
 * x-ratelimit-reset-* (OpenAI's "6m0s"), anthropic-ratelimit-*-remaining
 * and anthropic-ratelimit-*-reset (RFC 3339).
 */

static void
ngx_http_conductor_read_limits(ngx_http_request_t *r, ngx_uint_t status,
    ngx_http_conductor_limits_t *lim)
{
    time_t            t;
    int64_t           n;
    uint64_t          now_ms, reset, reset_req, reset_tok;
    ngx_str_t        *k, *v;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    lim->retry_after = 0;
    lim->remaining_requests = -1;
    lim->remaining_tokens = -1;
    lim->exhausted_until = 0;

    if (r->upstream == NULL) {
        return;
    }

    now_ms = ngx_http_conductor_now_ms();
    reset_req = 0;
    reset_tok = 0;

    part = &r->upstream->headers_in.headers.part;
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

        k = &h[i].key;
        v = &h[i].value;

        if (ngx_http_conductor_header_is(k, "retry-after")) {
            n = ngx_atoi(v->data, v->len);

            if (n != NGX_ERROR) {
                lim->retry_after = ngx_max(lim->retry_after,
                                           (ngx_msec_t) n * 1000);

            } else {
                t = ngx_parse_http_time(v->data, v->len);

                if (t != NGX_ERROR && (uint64_t) t * 1000 > now_ms) {
                    lim->retry_after = ngx_max(lim->retry_after,
                                           (ngx_msec_t) (t * 1000 - now_ms));
                }
            }

        } else if (ngx_http_conductor_header_is(k, "retry-after-ms")) {
            n = ngx_atoi(v->data, v->len);

            if (n != NGX_ERROR) {
                lim->retry_after = ngx_max(lim->retry_after, (ngx_msec_t) n);
            }

        } else if (ngx_http_conductor_header_is(k,
                                        "x-ratelimit-remaining-requests")
                   || ngx_http_conductor_header_is(k,
                                   "anthropic-ratelimit-requests-remaining"))
        {
            lim->remaining_requests = ngx_atoi(v->data, v->len);

        } else if (ngx_http_conductor_header_is(k,
                                        "x-ratelimit-remaining-tokens")
                   || ngx_http_conductor_header_is(k,
                                     "anthropic-ratelimit-tokens-remaining"))
        {
            lim->remaining_tokens = ngx_atoi(v->data, v->len);

        } else if (ngx_http_conductor_header_is(k,
                                             "x-ratelimit-reset-requests"))
        {
            reset_req = ngx_http_conductor_parse_duration(v);

        } else if (ngx_http_conductor_header_is(k,
                                               "x-ratelimit-reset-tokens"))
        {
            reset_tok = ngx_http_conductor_parse_duration(v);

        } else if (ngx_http_conductor_header_is(k,
                                       "anthropic-ratelimit-requests-reset"))
        {
            reset_req = ngx_http_conductor_parse_rfc3339(v, now_ms);

        } else if (ngx_http_conductor_header_is(k,
                                         "anthropic-ratelimit-tokens-reset"))
        {
            reset_tok = ngx_http_conductor_parse_rfc3339(v, now_ms);
        }
    }

    if (lim->remaining_requests == NGX_ERROR) {
        lim->remaining_requests = -1;
    }

    if (lim->remaining_tokens == NGX_ERROR) {
        lim->remaining_tokens = -1;
    }

    /* a 429 without Retry-After waits for the limit it hit to reset */
    reset = 0;

    if (lim->remaining_requests == 0 || status == NGX_HTTP_TOO_MANY_REQUESTS)
    {
        reset = reset_req;
    }

    if (lim->remaining_tokens == 0 || status == NGX_HTTP_TOO_MANY_REQUESTS) {
        reset = ngx_max(reset, reset_tok);
    }

    if (status == NGX_HTTP_TOO_MANY_REQUESTS && lim->retry_after == 0) {
        lim->retry_after = (ngx_msec_t) reset;

    } else if (reset && (lim->remaining_requests == 0
                         || lim->remaining_tokens == 0))
    {
        lim->exhausted_until = now_ms + reset;
    }
}


static ngx_uint_t
ngx_http_conductor_header_is(ngx_str_t *key, const char *name)
{
    size_t  len;

    len = ngx_strlen(name);

    return key->len == len
           && ngx_strncasecmp(key->data, (u_char *) name, len) == 0;
}


/* OpenAI's reset durations: "6m0s", "1s", "20ms", "0.5s", "1h2m3.5s" */

static uint64_t
ngx_http_conductor_parse_duration(ngx_str_t *v)
{
    u_char    *p, *last;
    uint64_t   ms, n, frac, scale;

    ms = 0;
    p = v->data;
    last = p + v->len;

    while (p < last) {
        n = 0;
        frac = 0;
        scale = 1;

        if (*p < '0' || *p > '9') {
            return 0;
        }

        while (p < last && *p >= '0' && *p <= '9' && n < 1000000) {
            n = n * 10 + (*p++ - '0');
        }

        if (p < last && *p == '.') {
            for (p++; p < last && *p >= '0' && *p <= '9'; p++) {
                if (scale < 1000) {
                    frac = frac * 10 + (*p - '0');
                    scale *= 10;
                }
            }
        }

        if (last - p >= 2 && p[0] == 'm' && p[1] == 's') {
            ms += n;
            p += 2;

        } else if (p < last && *p == 'h') {
            ms += n * 3600000 + frac * 3600000 / scale;
            p++;

        } else if (p < last && *p == 'm') {
            ms += n * 60000 + frac * 60000 / scale;
            p++;

        } else if (p < last && *p == 's') {
            ms += n * 1000 + frac * 1000 / scale;
            p++;

        } else {
            return 0;
        }
    }

    return ms;
}


/* ms from now until an RFC 3339 time, "2026-11-21T20:31:07Z" */

static uint64_t
ngx_http_conductor_parse_rfc3339(ngx_str_t *v, uint64_t now_ms)
{
    u_char     *p;
    time_t      t;
    struct tm   tm;
    ngx_uint_t  i;
    ngx_int_t   f[6];
    static ngx_uint_t  len[6] = { 4, 2, 2, 2, 2, 2 };

    p = v->data;

    if (v->len < 20) {
        return 0;
    }

    for (i = 0; i < 6; i++) {
        f[i] = ngx_atoi(p, len[i]);

        if (f[i] == NGX_ERROR) {
            return 0;
        }

        p += len[i] + 1;
    }

    ngx_memzero(&tm, sizeof(struct tm));

    tm.tm_year = f[0] - 1900;
    tm.tm_mon = f[1] - 1;
    tm.tm_mday = f[2];
    tm.tm_hour = f[3];
    tm.tm_min = f[4];
    tm.tm_sec = f[5];

    /* the APIs send UTC ("Z"); fractions of a second are left out */
    t = timegm(&tm);

    if ((uint64_t) t * 1000 <= now_ms) {
        return 0;
    }

    return (uint64_t) t * 1000 - now_ms;
}


/* NGX_DECLINED for an answer that is not an error */

static ngx_int_t
ngx_http_conductor_error_class(ngx_peer_connection_t *pc, ngx_uint_t state,
    ngx_uint_t status)
{
    ngx_connection_t  *c;

    if (status == NGX_HTTP_TOO_MANY_REQUESTS) {
        return NGX_HTTP_CONDUCTOR_ERR_429;
    }

    if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        return NGX_HTTP_CONDUCTOR_ERR_5XX;
    }

    if (status >= NGX_HTTP_BAD_REQUEST) {
        return NGX_HTTP_CONDUCTOR_ERR_4XX;
    }

    if (!(state & NGX_PEER_FAILED)) {
        return NGX_DECLINED;
    }

    c = pc->connection;

    if (c && (c->read->timedout || c->write->timedout)) {
        return NGX_HTTP_CONDUCTOR_ERR_TIMEOUT;
    }

    return NGX_HTTP_CONDUCTOR_ERR_CONNECT;
}


/*
 * The provider's key is written into the request the proxy has just built,
 * after its last header: the secret never passes through a variable or the
 * proxy's own header processing, so no log level can show it.
 */

static ngx_int_t
ngx_http_conductor_add_auth(ngx_http_request_t *r,
    ngx_http_conductor_cand_t *cand)
{
    u_char       *p;
    size_t        len;
    ngx_buf_t    *b, *nb;
    ngx_chain_t  *cl;

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

    nb = ngx_create_temp_buf(r->pool, len + sizeof("Authorization: Bearer ")
                                      + cand->key->header.len + 2);
    if (nb == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(nb->last, b->pos, len - 2);

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


static ngx_int_t
ngx_http_conductor_cache_get(ngx_peer_connection_t *pc,
    ngx_http_conductor_ctx_t *ctx)
{
    ngx_queue_t                         *q, *cache;
    ngx_connection_t                    *c;
    ngx_http_conductor_cache_t          *item;
    ngx_http_conductor_balancer_conf_t  *bcf;

    bcf = ctx->bcf;

    if (bcf->keepalive == 0) {
        return NGX_OK;
    }

    cache = &bcf->cache;

    for (q = ngx_queue_head(cache);
         q != ngx_queue_sentinel(cache);
         q = ngx_queue_next(q))
    {
        item = ngx_queue_data(q, ngx_http_conductor_cache_t, queue);

        if (item->provider != ctx->cand->provider
            || ngx_memn2cmp((u_char *) &item->sockaddr, (u_char *) pc->sockaddr,
                            item->socklen, pc->socklen)
               != 0)
        {
            continue;
        }

        ngx_queue_remove(q);
        ngx_queue_insert_head(&bcf->free, q);

        c = item->connection;

        c->idle = 0;
        c->sent = 0;
        c->data = NULL;
        c->log = pc->log;
        c->read->log = pc->log;
        c->write->log = pc->log;
        c->pool->log = pc->log;

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        pc->connection = c;
        pc->cached = 1;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, pc->log, 0,
                       "conductor: reusing a kept-alive connection to "
                       "provider \"%V\"", &item->provider->name);

        return NGX_DONE;
    }

    return NGX_OK;
}


static void
ngx_http_conductor_cache_put(ngx_peer_connection_t *pc,
    ngx_http_conductor_ctx_t *ctx, ngx_uint_t state)
{
    ngx_queue_t                         *q;
    ngx_connection_t                    *c;
    ngx_http_upstream_t                 *u;
    ngx_http_conductor_cache_t          *item;
    ngx_http_conductor_balancer_conf_t  *bcf;

    bcf = ctx->bcf;
    c = pc->connection;
    u = ctx->request->upstream;

    if (bcf->keepalive == 0
        || (state & NGX_PEER_FAILED)
        || c == NULL
        || c->read->eof
        || c->read->error
        || c->read->timedout
        || c->write->error
        || c->write->timedout
        || c->requests >= bcf->keepalive_requests
        || !u->keepalive
        || !u->request_body_sent
        || ngx_terminate
        || ngx_exiting)
    {
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        return;
    }

    if (ngx_queue_empty(&bcf->free)) {
        /* the oldest idle connection makes room */
        q = ngx_queue_last(&bcf->cache);
        ngx_queue_remove(q);

        item = ngx_queue_data(q, ngx_http_conductor_cache_t, queue);
        ngx_http_conductor_cache_close(item->connection);

    } else {
        q = ngx_queue_head(&bcf->free);
        ngx_queue_remove(q);

        item = ngx_queue_data(q, ngx_http_conductor_cache_t, queue);
    }

    ngx_queue_insert_head(&bcf->cache, q);

    item->connection = c;
    item->provider = ctx->cand->provider;

    pc->connection = NULL;

    c->read->delayed = 0;
    ngx_add_timer(c->read, bcf->keepalive_timeout);

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    c->write->handler = ngx_http_conductor_cache_dummy_handler;
    c->read->handler = ngx_http_conductor_cache_close_handler;

    c->data = item;
    c->idle = 1;
    c->log = ngx_cycle->log;
    c->read->log = ngx_cycle->log;
    c->write->log = ngx_cycle->log;
    c->pool->log = ngx_cycle->log;

    item->socklen = pc->socklen;
    ngx_memcpy(&item->sockaddr, pc->sockaddr, pc->socklen);

    if (c->read->ready) {
        ngx_http_conductor_cache_close_handler(c->read);
    }
}


static void
ngx_http_conductor_cache_dummy_handler(ngx_event_t *ev)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "conductor: idle connection dummy handler");
}


/* an idle connection that becomes readable was closed or misbehaves */

static void
ngx_http_conductor_cache_close_handler(ngx_event_t *ev)
{
    int                          n;
    char                         buf[1];
    ngx_connection_t            *c;
    ngx_http_conductor_cache_t  *item;

    c = ev->data;

    if (c->close || c->read->timedout) {
        goto close;
    }

    n = recv(c->fd, buf, 1, MSG_PEEK);

    if (n == -1 && ngx_socket_errno == NGX_EAGAIN) {
        ev->ready = 0;

        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            goto close;
        }

        return;
    }

close:

    item = c->data;

    ngx_http_conductor_cache_close(c);

    ngx_queue_remove(&item->queue);
    ngx_queue_insert_head(&item->conf->free, &item->queue);
}


static void
ngx_http_conductor_cache_close(ngx_connection_t *c)
{
#if (NGX_HTTP_SSL)

    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;

        if (ngx_ssl_shutdown(c) == NGX_AGAIN) {
            c->ssl->handler = ngx_http_conductor_cache_close;
            return;
        }
    }

#endif

    ngx_destroy_pool(c->pool);
    ngx_close_connection(c);
}


#if (NGX_HTTP_SSL)

static ngx_int_t
ngx_http_conductor_set_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_conductor_ctx_t *ctx = data;

    ngx_ssl_session_t  *session;

    session = ctx->cand->provider->ssl_session;

    if (session == NULL) {
        return NGX_OK;
    }

    return ngx_ssl_set_session(pc->connection, session);
}


static void
ngx_http_conductor_save_session(ngx_peer_connection_t *pc, void *data)
{
    ngx_http_conductor_ctx_t *ctx = data;

    ngx_ssl_session_t              *old, *session;
    ngx_http_conductor_provider_t  *p;

    session = ngx_ssl_get_session(pc->connection);

    if (session == NULL) {
        return;
    }

    /* per provider and per worker: sessions never cross providers */
    p = ctx->cand->provider;
    old = p->ssl_session;
    p->ssl_session = session;

    if (old) {
        ngx_ssl_free_session(old);
    }
}

#endif
