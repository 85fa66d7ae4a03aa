
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
                      "conductor: upstream \"%V\" uses conductor_balancer, "
                      "but the location has no conductor_route", &us->host);
        return NGX_ERROR;
    }

    ctx->bcf = ngx_http_conf_upstream_srv_conf(us, ngx_http_conductor_module);

    /* the first attempt's request was created before the balancer ran */
    if (ngx_http_conductor_attempt_request(r, ctx, 0) != NGX_OK) {
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

    ngx_int_t                       rc;
    ngx_addr_t                     *addr;
    ngx_http_request_t             *r;
    ngx_http_upstream_t            *u;
    ngx_http_conductor_provider_t  *p;

    r = ctx->request;
    u = r->upstream;

    /* keepalive's reuse flag would otherwise grant endless extra tries */
    pc->cached = 0;
    pc->connection = NULL;

    if (++ctx->peer_gets > 2 * NGX_HTTP_CONDUCTOR_MAX_ATTEMPTS) {
        return NGX_BUSY;
    }

    if (ctx->peer_gets > 1 && !ctx->retry_same) {

        rc = ngx_http_conductor_attempt(r, ctx);

        if (rc == NGX_DECLINED) {
            return NGX_BUSY;
        }

        if (rc != NGX_OK
            || ngx_http_conductor_attempt_request(r, ctx, 1) != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    ctx->retry_same = 0;

    p = ctx->cand->provider;

#if (NGX_HTTP_SSL)
    if (p->ssl && u->conf->ssl == NULL) {
        ngx_log_error(NGX_LOG_ERR, pc->log, 0,
                      "conductor: provider \"%V\" is https, but proxy_pass "
                      "of this location is neither https nor a variable: "
                      "include conductor_proxy.conf", &p->name);
        return NGX_ERROR;
    }

    u->ssl = p->ssl;
#endif

    addr = &p->addrs[ctx->attempts % p->naddrs];

    pc->sockaddr = addr->sockaddr;
    pc->socklen = addr->socklen;
    pc->name = &addr->name;

    /* the last candidate's answer, even a 429, is the client's answer */
    if (!ctx->more || ctx->attempts >= ctx->max_attempts) {
        pc->tries = 1;
    }

    if (ngx_http_conductor_cache_get(pc, ctx) == NGX_DONE) {
        return NGX_DONE;
    }

    return NGX_OK;
}


/*
 * An attempt ends.  One that failed and is not the client's answer is
 * settled with the ledger now, so that the retry's pick sees it; the
 * client's answer is settled in the LOG phase, when its end is known (a
 * stream may still be cut).
 */

static void
ngx_http_conductor_balancer_free(ngx_peer_connection_t *pc, void *data,
    ngx_uint_t state)
{
    ngx_http_conductor_ctx_t *ctx = data;

    ngx_int_t                      fault;
    ngx_connection_t              *c;
    ngx_http_request_t            *r;
    ngx_http_upstream_state_t     *us;
    ngx_http_conductor_outcome_t   o;

    r = ctx->request;
    us = r->upstream->state;
    o.status = us ? us->status : 0;

    /* a kept-alive connection the provider had closed: same key again */
    if ((state & NGX_PEER_FAILED) && pc->cached && o.status == 0) {
        ctx->retry_same = 1;
        pc->tries--;
        return;
    }

    if (state == 0) {
        /* this attempt's answer is the client's (a retried 403/404
         * comes as NGX_PEER_NEXT) */
        ctx->winner = ctx->cand;

    } else {
        fault = NGX_DECLINED;

        /* a fault without an error status: unreachable, reset, invalid
         * header, timed out */
        if ((state & NGX_PEER_FAILED) && o.status < NGX_HTTP_BAD_REQUEST) {
            c = pc->connection;
            fault = (c && (c->read->timedout || c->write->timedout))
                    ? NGX_HTTP_CONDUCTOR_ERR_TIMEOUT
                    : NGX_HTTP_CONDUCTOR_ERR_CONNECT;
        }

        o.err = ngx_http_conductor_ledger_class(o.status, fault);

        if (o.err == NGX_DECLINED) {
            /* NGX_PEER_NEXT without a failure: counted as the 4xx it is */
            o.err = NGX_HTTP_CONDUCTOR_ERR_4XX;
        }

        o.ttfb = 0;
        ngx_http_conductor_ledger_hints(r, &o);

        ngx_http_conductor_ledger_fail(r, ctx, &o);
    }

    ngx_http_conductor_cache_put(pc, ctx, state);

    pc->tries--;
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
