
/*
 * Active health checks (the Conduit seed): "health_check interval=10s
 * uri=/models" in a provider block.  Every worker has a timer, but a lease
 * in the zone lets one worker check a provider per interval.  The check is
 * a non-blocking GET (over TLS for https providers) whose answer must be
 * below 500; it carries no key, so no secret travels for it.  A provider
 * that fails "fails" checks in a row is skipped until "passes" checks in a
 * row succeed.
 */


#include "ngx_http_conductor.h"


typedef struct {
    ngx_http_conductor_provider_t    *provider;
    ngx_http_conductor_main_conf_t   *cmcf;
    ngx_event_t                       timer;
} ngx_http_conductor_health_t;


typedef struct {
    ngx_http_conductor_health_t      *health;
    ngx_peer_connection_t             peer;
    ngx_buf_t                        *in;
    size_t                            sent;
} ngx_http_conductor_check_t;


static void ngx_http_conductor_health_timer(ngx_event_t *ev);
static void ngx_http_conductor_health_start(ngx_http_conductor_health_t *hc);
static void ngx_http_conductor_health_write(ngx_event_t *ev);
static void ngx_http_conductor_health_read(ngx_event_t *ev);
static void ngx_http_conductor_health_done(ngx_connection_t *c,
    ngx_uint_t ok);
static void ngx_http_conductor_health_report(ngx_http_conductor_health_t *hc,
    ngx_uint_t ok);
#if (NGX_HTTP_SSL)
static void ngx_http_conductor_health_handshake(ngx_connection_t *c);
#endif


char *
ngx_http_conductor_health_conf(ngx_conf_t *cf,
    ngx_http_conductor_provider_t *p)
{
    u_char      *last, *c;
    ngx_int_t    rc;
    ngx_str_t   *value, uri;
    ngx_uint_t   i;

    value = cf->args->elts;

    p->hc_interval = 10000;
    p->hc_timeout = 5000;
    p->hc_fails = 1;
    p->hc_passes = 1;
    ngx_str_set(&uri, "/models");

    for (i = 1; i < cf->args->nelts; i++) {

        rc = ngx_http_conductor_param_msec(&value[i], "interval",
                                           &p->hc_interval);
        if (rc == NGX_DECLINED) {
            rc = ngx_http_conductor_param_msec(&value[i], "timeout",
                                               &p->hc_timeout);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_http_conductor_param_num(&value[i], "fails",
                                              &p->hc_fails);
        }

        if (rc == NGX_DECLINED) {
            rc = ngx_http_conductor_param_num(&value[i], "passes",
                                              &p->hc_passes);
        }

        if (rc == NGX_OK) {
            continue;
        }

        if (rc == NGX_ERROR) {
            goto invalid;
        }

        if (value[i].len > 5 && ngx_strncmp(value[i].data, "uri=/", 5) == 0) {
            uri.data = value[i].data + 4;
            uri.len = value[i].len - 4;
            continue;
        }

        goto invalid;
    }

    for (c = uri.data; c < uri.data + uri.len; c++) {
        if (*c <= ' ' || *c == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid health_check uri \"%V\"", &uri);
            return NGX_CONF_ERROR;
        }
    }

    /* the request is made once: the path prefix is known (url comes
     * first) or the provider's own is added when the block ends */
    p->hc_request.len = sizeof("GET  HTTP/1.1" CRLF "Host: " CRLF
                               "User-Agent: nginx-conductor-health" CRLF
                               "Connection: close" CRLF CRLF) - 1
                        + 256 + uri.len + 256;
    p->hc_request.data = ngx_pnalloc(cf->pool, p->hc_request.len);
    if (p->hc_request.data == NULL) {
        return NGX_CONF_ERROR;
    }

    if (p->url.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "health_check must come after url");
        return NGX_CONF_ERROR;
    }

    last = ngx_snprintf(p->hc_request.data, p->hc_request.len,
                        "GET %V%V HTTP/1.1" CRLF "Host: %V" CRLF
                        "User-Agent: nginx-conductor-health" CRLF
                        "Connection: close" CRLF CRLF,
                        &p->prefix, &uri, &p->host);
    p->hc_request.len = last - p->hc_request.data;

#if (NGX_HTTP_SSL)
    if (p->ssl) {
        p->hc_ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
        if (p->hc_ssl == NULL) {
            return NGX_CONF_ERROR;
        }

        p->hc_ssl->log = cf->log;

        if (ngx_ssl_create(p->hc_ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }
#endif

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid health_check parameter \"%V\": expected "
                       "interval=TIME, timeout=TIME, uri=/PATH, fails=N or "
                       "passes=N", &value[i]);
    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_http_conductor_health_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_http_conductor_health_t      *hc;
    ngx_http_conductor_provider_t   **p;
    ngx_http_conductor_main_conf_t   *cmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_conductor_module);

    if (cmcf == NULL || cmcf->sh == NULL) {
        return NGX_OK;
    }

    p = cmcf->providers.elts;

    for (i = 0; i < cmcf->providers.nelts; i++) {

        if (p[i]->hc_interval == 0) {
            continue;
        }

        hc = ngx_pcalloc(cycle->pool, sizeof(ngx_http_conductor_health_t));
        if (hc == NULL) {
            return NGX_ERROR;
        }

        hc->provider = p[i];
        hc->cmcf = cmcf;
        hc->timer.handler = ngx_http_conductor_health_timer;
        hc->timer.data = hc;
        hc->timer.log = cycle->log;

        /* a worker that exits never waits for a check */
        hc->timer.cancelable = 1;

        ngx_add_timer(&hc->timer, ngx_random() % 100 + 10);
    }

    return NGX_OK;
}


static void
ngx_http_conductor_health_timer(ngx_event_t *ev)
{
    uint64_t                        now;
    ngx_uint_t                      mine;
    ngx_http_conductor_health_t    *hc;

    hc = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    now = ngx_http_conductor_now_ms();

    /* the lease: the first worker past health_next checks this round */
    mine = ngx_http_conductor_ledger_health_lease(hc->cmcf, hc->provider,
                                                  now);

    if (mine) {
        ngx_http_conductor_health_start(hc);
    }

    ngx_add_timer(ev, hc->provider->hc_interval);
}


static void
ngx_http_conductor_health_start(ngx_http_conductor_health_t *hc)
{
    ngx_int_t                       rc;
    ngx_pool_t                     *pool;
    ngx_connection_t               *c;
    ngx_http_conductor_check_t     *ck;
    ngx_http_conductor_provider_t  *p;

    p = hc->provider;

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    ck = ngx_pcalloc(pool, sizeof(ngx_http_conductor_check_t));
    if (ck == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    ck->health = hc;
    ck->in = ngx_create_temp_buf(pool, 64);
    if (ck->in == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    ck->peer.sockaddr = p->addrs[0].sockaddr;
    ck->peer.socklen = p->addrs[0].socklen;
    ck->peer.name = &p->addrs[0].name;
    ck->peer.get = ngx_event_get_peer;
    ck->peer.log = ngx_cycle->log;
    ck->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&ck->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (ck->peer.connection) {
            ngx_close_connection(ck->peer.connection);
        }

        ngx_destroy_pool(pool);
        ngx_http_conductor_health_report(hc, 0);
        return;
    }

    c = ck->peer.connection;
    c->data = ck;
    c->pool = pool;
    c->log = ngx_cycle->log;
    c->read->handler = ngx_http_conductor_health_read;
    c->write->handler = ngx_http_conductor_health_write;

    ngx_add_timer(c->write, p->hc_timeout);

    if (rc == NGX_OK) {
        ngx_http_conductor_health_write(c->write);
    }
}


static void
ngx_http_conductor_health_write(ngx_event_t *ev)
{
    ssize_t                          n;
    ngx_connection_t                *c;
    ngx_http_conductor_check_t      *ck;
    ngx_http_conductor_provider_t   *p;

    c = ev->data;
    ck = c->data;
    p = ck->health->provider;

    if (ev->timedout) {
        ngx_http_conductor_health_done(c, 0);
        return;
    }

#if (NGX_HTTP_SSL)
    if (p->ssl && c->ssl == NULL) {

        if (ngx_ssl_create_connection(p->hc_ssl, c, NGX_SSL_CLIENT) != NGX_OK)
        {
            ngx_http_conductor_health_done(c, 0);
            return;
        }

        SSL_set_tlsext_host_name(c->ssl->connection, (char *) p->sni.data);

        if (ngx_ssl_handshake(c) == NGX_AGAIN) {
            c->ssl->handler = ngx_http_conductor_health_handshake;
            return;
        }

        ngx_http_conductor_health_handshake(c);
        return;
    }
#endif

    while (ck->sent < p->hc_request.len) {
        n = c->send(c, p->hc_request.data + ck->sent,
                    p->hc_request.len - ck->sent);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(ev, 0) != NGX_OK) {
                ngx_http_conductor_health_done(c, 0);
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_conductor_health_done(c, 0);
            return;
        }

        ck->sent += n;
    }

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    ev->handler = ngx_http_conductor_health_read;    /* nothing more to send */
    ngx_add_timer(c->read, p->hc_timeout);

    if (c->read->ready) {
        ngx_http_conductor_health_read(c->read);
    }
}


#if (NGX_HTTP_SSL)

static void
ngx_http_conductor_health_handshake(ngx_connection_t *c)
{
    if (!c->ssl->handshaked) {
        ngx_http_conductor_health_done(c, 0);
        return;
    }

    c->read->handler = ngx_http_conductor_health_read;
    c->write->handler = ngx_http_conductor_health_write;

    ngx_http_conductor_health_write(c->write);
}

#endif


/* "HTTP/1.1 200" is all it takes: any answer below 500 is a live provider */

static void
ngx_http_conductor_health_read(ngx_event_t *ev)
{
    ssize_t                      n;
    ngx_buf_t                   *b;
    ngx_int_t                    status;
    ngx_connection_t            *c;
    ngx_http_conductor_check_t  *ck;

    c = ev->data;
    ck = c->data;
    b = ck->in;

    if (ev->timedout) {
        ngx_http_conductor_health_done(c, 0);
        return;
    }

    if (ck->sent < ck->health->provider->hc_request.len) {
        /* a read event before the request has gone */
        ngx_http_conductor_health_write(c->write);
        return;
    }

    while (b->last < b->end) {
        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(ev, 0) != NGX_OK) {
                ngx_http_conductor_health_done(c, 0);
            }

            return;
        }

        if (n == NGX_ERROR || n == 0) {
            break;
        }

        b->last += n;

        if (b->last - b->pos >= 12) {
            break;
        }
    }

    if (b->last - b->pos < 12
        || ngx_strncmp(b->pos, "HTTP/1.", 7) != 0)
    {
        ngx_http_conductor_health_done(c, 0);
        return;
    }

    status = ngx_atoi(b->pos + 9, 3);

    ngx_http_conductor_health_done(c, status != NGX_ERROR && status < 500);
}


static void
ngx_http_conductor_health_done(ngx_connection_t *c, ngx_uint_t ok)
{
    ngx_pool_t                  *pool;
    ngx_http_conductor_check_t  *ck;

    ck = c->data;

    ngx_http_conductor_health_report(ck->health, ok);

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }
#endif

    pool = c->pool;
    ngx_close_connection(c);
    ngx_destroy_pool(pool);
}


static void
ngx_http_conductor_health_report(ngx_http_conductor_health_t *hc,
    ngx_uint_t ok)
{
    ngx_http_conductor_ledger_health(hc->cmcf, hc->provider, ok);
}
