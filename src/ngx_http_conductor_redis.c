
/*
 * The fleet store's connection (conductor_redis): one connection per worker
 * to Redis, opened when the worker starts and kept open.  It is nginx's
 * own non-blocking connection (TLS for rediss://); hiredis only parses the
 * replies (the module writes the commands: ngx_http_conductor_resp.c).
 * Commands are pipelined: their bytes go
 * out on write readiness, their handlers wait in a FIFO and get the replies
 * in order.
 *
 * It fails fast: when the oldest command waits past timeout=, every
 * pending one fails and the connection is closed; while it is down a new
 * command fails at once.  Callers fall back to the node's own counters
 * without waiting.  Reconnects back off from 100ms to 5s.  The password
 * is sent in AUTH and never appears in a log line or the status output.
 */


#include "ngx_http_conductor.h"

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "ngx_http_conductor_resp.h"

#if (NGX_HTTP_SSL)
#include <openssl/x509v3.h>
#endif


#define NGX_HTTP_CONDUCTOR_REDIS_BACKOFF_MIN  100
#define NGX_HTTP_CONDUCTOR_REDIS_BACKOFF_MAX  5000
#define NGX_HTTP_CONDUCTOR_REDIS_IDLE_TICK    1000   /* with sync=0 */
#define NGX_HTTP_CONDUCTOR_REDIS_OUT_SIZE     4096
#define NGX_HTTP_CONDUCTOR_REDIS_OUT_KEEP     65536
#define NGX_HTTP_CONDUCTOR_REDIS_FREE_MAX     64
#define NGX_HTTP_CONDUCTOR_REDIS_PREFIX_MAX   128

/* why the connection went down: a reason is logged when it changes */
#define NGX_HTTP_CONDUCTOR_REDIS_OK           0
#define NGX_HTTP_CONDUCTOR_REDIS_ECONNECT     1
#define NGX_HTTP_CONDUCTOR_REDIS_ECLOSED      2
#define NGX_HTTP_CONDUCTOR_REDIS_ETIMEOUT     3
#define NGX_HTTP_CONDUCTOR_REDIS_EPROTOCOL    4
#define NGX_HTTP_CONDUCTOR_REDIS_ETLS         5
#define NGX_HTTP_CONDUCTOR_REDIS_EVERIFY      6
#define NGX_HTTP_CONDUCTOR_REDIS_EAUTH        7
#define NGX_HTTP_CONDUCTOR_REDIS_EHELLO       8   /* SELECT, PING refused */
#define NGX_HTTP_CONDUCTOR_REDIS_ENOMEM       9

/* the commands that open a connection, before any other */
#define NGX_HTTP_CONDUCTOR_REDIS_AUTH         1
#define NGX_HTTP_CONDUCTOR_REDIS_SETNAME      2
#define NGX_HTTP_CONDUCTOR_REDIS_SELECT       3
#define NGX_HTTP_CONDUCTOR_REDIS_PING         4


struct ngx_http_conductor_redis_cmd_s {
    ngx_queue_t                          queue;
    ngx_http_conductor_redis_handler_pt  handler;   /* NULL: cancelled */
    void                                *data;
    ngx_msec_t                           deadline;
};


/* this worker's connection */
typedef struct {
    ngx_http_conductor_redis_conf_t     *conf;
    ngx_http_conductor_redis_sh_t       *sh;        /* counters */
    ngx_http_conductor_redis_worker_t   *me;        /* this worker's */

    ngx_log_t                            log;       /* the connection's */
    ngx_uint_t                           log_level; /* when not quiet */
    ngx_peer_connection_t                peer;
    ngx_connection_t                    *c;         /* NULL: none */
    redisReader                         *reader;
    ngx_uint_t                           state;
    ngx_uint_t                           generation;  /* per close */
    ngx_uint_t                           reason;    /* of the last down */
    ngx_uint_t                           next_addr;
    ngx_uint_t                           attempts;
    ngx_msec_t                           backoff;

    /* the commands not yet sent, pipelined */
    u_char                              *out_start;
    u_char                              *out_pos;
    u_char                              *out_last;
    u_char                              *out_end;

    ngx_queue_t                          pending;   /* sent, in order */
    ngx_uint_t                           npending;
    ngx_queue_t                          free;      /* for reuse */
    ngx_uint_t                           nfree;
    ngx_uint_t                           sent_since_tick;
    ngx_uint_t                           unsent;    /* commands in out */

    ngx_event_t                          tick;      /* sync=, reconnect */
    ngx_event_t                          watchdog;  /* the oldest's deadline */

    unsigned                             connected:1;   /* TCP */
    unsigned                             established:1; /* and TLS */
    unsigned                             secret_out:1;  /* AUTH's bytes */
    unsigned                             was_ready:1;   /* ever */
} ngx_http_conductor_redis_t;


static char *ngx_http_conductor_redis_url(ngx_conf_t *cf,
    ngx_http_conductor_redis_conf_t *rcf, ngx_str_t *url);
static ngx_int_t ngx_http_conductor_redis_param(ngx_str_t *arg,
    const char *name, ngx_str_t *value);
static ngx_int_t ngx_http_conductor_redis_printable(ngx_str_t *s);
#if (NGX_HTTP_SSL)
static char *ngx_http_conductor_redis_ssl_conf(ngx_conf_t *cf,
    ngx_http_conductor_redis_conf_t *rcf);
#endif
static void ngx_http_conductor_redis_slot(ngx_http_conductor_redis_t *rs,
    ngx_http_conductor_main_conf_t *cmcf, ngx_cycle_t *cycle);
static u_char *ngx_http_conductor_redis_log_error(ngx_log_t *log,
    u_char *buf, size_t len);
static void ngx_http_conductor_redis_tick_handler(ngx_event_t *ev);
static void ngx_http_conductor_redis_connect(ngx_http_conductor_redis_t *rs);
static void ngx_http_conductor_redis_write_handler(ngx_event_t *wev);
#if (NGX_HTTP_SSL)
static void ngx_http_conductor_redis_tls(ngx_http_conductor_redis_t *rs);
static void ngx_http_conductor_redis_tls_done(ngx_connection_t *c);
static ngx_int_t ngx_http_conductor_redis_check_name(
    ngx_http_conductor_redis_t *rs, ngx_connection_t *c);
#endif
static void ngx_http_conductor_redis_flush(ngx_http_conductor_redis_t *rs);
static void ngx_http_conductor_redis_read_handler(ngx_event_t *rev);
static void ngx_http_conductor_redis_dispatch(ngx_http_conductor_redis_t *rs,
    redisReply *reply);
static void ngx_http_conductor_redis_hello(void *data, redisReply *reply);
static void ngx_http_conductor_redis_ready(ngx_http_conductor_redis_t *rs);
static ngx_http_conductor_redis_cmd_t *ngx_http_conductor_redis_append(
    ngx_http_conductor_redis_t *rs, ngx_uint_t argc, const char **argv,
    const size_t *argvlen, ngx_http_conductor_redis_handler_pt handler,
    void *data, ngx_uint_t secret);
static ngx_int_t ngx_http_conductor_redis_room(ngx_http_conductor_redis_t *rs,
    size_t len);
static void ngx_http_conductor_redis_ping(ngx_http_conductor_redis_t *rs);
static void ngx_http_conductor_redis_watchdog(ngx_event_t *ev);
static void ngx_http_conductor_redis_fail(ngx_http_conductor_redis_t *rs,
    ngx_uint_t reason, ngx_err_t err, const char *what);
static void ngx_http_conductor_redis_close(ngx_http_conductor_redis_t *rs);
static void ngx_http_conductor_redis_abort(ngx_http_conductor_redis_t *rs);
static void ngx_http_conductor_redis_free_cmd(ngx_http_conductor_redis_t *rs,
    ngx_http_conductor_redis_cmd_t *cmd);
static void ngx_http_conductor_redis_set_state(
    ngx_http_conductor_redis_t *rs, ngx_uint_t state);


/* the sync engine's, when there is one; the connection PINGs when idle */
ngx_http_conductor_redis_tick_pt  ngx_http_conductor_redis_tick;

static ngx_http_conductor_redis_t  *ngx_http_conductor_redis;

static const char  *ngx_http_conductor_redis_states[] = {
    "down", "connecting", "ready"
};


/*
 * conductor_redis redis[s]://HOST[:PORT][/DB] [password=SECRET|env=|file=]
 *     [user=NAME] [prefix=STR] [sync=T|0] [timeout=T]
 *     [on_failure=local|refuse] [ca=PATH]
 */

char *
ngx_http_conductor_redis_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_conductor_main_conf_t *cmcf = conf;

    u_char                           *p;
    ngx_str_t                        *value, v, password, name;
    ngx_uint_t                        i;
    ngx_http_conductor_redis_conf_t  *rcf;

    if (cmcf->redis) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_conductor_redis_conf_t));
    if (rcf == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&rcf->prefix, "conductor:");
    rcf->sync = 100;
    rcf->timeout = 200;
    rcf->on_failure = NGX_HTTP_CONDUCTOR_REDIS_LOCAL;
    ngx_str_null(&password);

    if (ngx_http_conductor_redis_url(cf, rcf, &value[1]) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_conductor_redis_param(&value[i], "password", &v)
            == NGX_OK)
        {
            password = v;
            continue;
        }

        if (ngx_http_conductor_redis_param(&value[i], "user", &v) == NGX_OK) {
            if (v.len == 0 || ngx_http_conductor_redis_printable(&v)
                              != NGX_OK)
            {
                goto invalid;
            }

            rcf->user = v;
            continue;
        }

        if (ngx_http_conductor_redis_param(&value[i], "prefix", &v)
            == NGX_OK)
        {
            if (v.len == 0 || v.len > NGX_HTTP_CONDUCTOR_REDIS_PREFIX_MAX
                || ngx_http_conductor_redis_printable(&v) != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid prefix \"%V\" of conductor_redis: "
                                   "1 to %d printable characters, no space",
                                   &v, NGX_HTTP_CONDUCTOR_REDIS_PREFIX_MAX);
                return NGX_CONF_ERROR;
            }

            rcf->prefix = v;
            continue;
        }

        if (ngx_http_conductor_redis_param(&value[i], "sync", &v) == NGX_OK) {
            /* sync=0: every reservation settled in Redis as it is made */
            if (v.len == 1 && v.data[0] == '0') {
                rcf->sync = 0;
                continue;
            }

            rcf->sync = ngx_parse_time(&v, 0);
            if (rcf->sync == (ngx_msec_t) NGX_ERROR || rcf->sync == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_http_conductor_redis_param(&value[i], "timeout", &v)
            == NGX_OK)
        {
            rcf->timeout = ngx_parse_time(&v, 0);
            if (rcf->timeout == (ngx_msec_t) NGX_ERROR || rcf->timeout == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_http_conductor_redis_param(&value[i], "on_failure", &v)
            == NGX_OK)
        {
            if (v.len == 5 && ngx_strncmp(v.data, "local", 5) == 0) {
                rcf->on_failure = NGX_HTTP_CONDUCTOR_REDIS_LOCAL;

            } else if (v.len == 6 && ngx_strncmp(v.data, "refuse", 6) == 0) {
                rcf->on_failure = NGX_HTTP_CONDUCTOR_REDIS_REFUSE;

            } else {
                goto invalid;
            }

            continue;
        }

        if (ngx_http_conductor_redis_param(&value[i], "ca", &v) == NGX_OK) {
            if (v.len == 0) {
                goto invalid;
            }

            rcf->ca = v;
            continue;
        }

        goto invalid;
    }

    if (password.data) {
        ngx_str_set(&name, "conductor_redis password");

        if (ngx_http_conductor_read_secret(cf, &password, &name,
                                           &rcf->password)
            != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    if (rcf->user.len && rcf->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "conductor_redis user= needs a password=");
        return NGX_CONF_ERROR;
    }

    if (rcf->ca.len && !rcf->tls) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "conductor_redis ca= needs a rediss:// url");
        return NGX_CONF_ERROR;
    }

#if (NGX_HTTP_SSL)
    if (rcf->tls
        && ngx_http_conductor_redis_ssl_conf(cf, rcf) != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }
#endif

    cmcf->redis = rcf;

    return NGX_CONF_OK;

invalid:

    /* the name only: a mistyped "password=" must not show its value */
    p = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%*s%s\" of conductor_redis: "
                       "expected password=, user=, prefix=, sync=TIME|0, "
                       "timeout=TIME, on_failure=local|refuse or ca=PATH",
                       p ? (size_t) (p - value[i].data) : value[i].len,
                       value[i].data, p ? "=..." : "");
    return NGX_CONF_ERROR;
}


/* redis[s]://HOST[:PORT][/DB], resolved here: a worker never resolves */

static char *
ngx_http_conductor_redis_url(ngx_conf_t *cf,
    ngx_http_conductor_redis_conf_t *rcf, ngx_str_t *url)
{
    size_t      add;
    ngx_int_t   db;
    ngx_str_t   host;
    ngx_url_t   u;
#if (NGX_HAVE_INET6)
    u_char      buf[16];
#endif

    if (url->len > 8
        && ngx_strncasecmp(url->data, (u_char *) "redis://", 8) == 0)
    {
        add = 8;

    } else if (url->len > 9
               && ngx_strncasecmp(url->data, (u_char *) "rediss://", 9) == 0)
    {
#if (NGX_HTTP_SSL)
        add = 9;
        rcf->tls = 1;
#else
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "a rediss:// url needs nginx built with ssl");
        return NGX_CONF_ERROR;
#endif

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid conductor_redis url: it must start with "
                           "redis:// or rediss://");
        return NGX_CONF_ERROR;
    }

    /* the url is shown in logs and the status: it may not carry a secret,
     * and is not repeated in the message */
    if (ngx_strlchr(url->data + add, url->data + url->len, '@')) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid conductor_redis url: no user or password "
                           "in it (it is shown in logs and the status); use "
                           "user= and password=");
        return NGX_CONF_ERROR;
    }

    if (ngx_http_conductor_redis_printable(url) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid conductor_redis url: printable ASCII "
                           "only");
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = url->data + add;
    u.url.len = url->len - add;
    u.default_port = 6379;
    u.uri_part = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s in url \"%V\"",
                           u.err ? u.err : "host not found", url);
        return NGX_CONF_ERROR;
    }

    if (u.uri.len == 0 || (u.uri.len == 1 && u.uri.data[0] == '/')) {
        db = 0;

    } else if (u.uri.data[0] == '/') {
        db = ngx_atoi(u.uri.data + 1, u.uri.len - 1);

    } else {
        db = NGX_ERROR;
    }

    if (db == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid database \"%V\" in url \"%V\": "
                           "a number is expected (/0, /1, ...)", &u.uri, url);
        return NGX_CONF_ERROR;
    }

    host = u.host;

    if (host.len > 2 && host.data[0] == '[') {
        host.data++;
        host.len -= 2;
    }

    rcf->host.data = ngx_pnalloc(cf->pool, host.len + 1);
    if (rcf->host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_cpystrn(rcf->host.data, host.data, host.len + 1);
    rcf->host.len = host.len;

    /* a certificate names an address differently, and SNI takes no address */
    rcf->host_is_ip = (ngx_inet_addr(host.data, host.len) != INADDR_NONE);

#if (NGX_HAVE_INET6)
    if (ngx_inet6_addr(host.data, host.len, buf) == NGX_OK) {
        rcf->host_is_ip = 1;
    }
#endif

    rcf->url = *url;
    rcf->port = u.port;
    rcf->addrs = u.addrs;
    rcf->naddrs = u.naddrs;
    rcf->db = db;

    return NGX_CONF_OK;
}


/* NGX_OK with the value when arg is "name=value" */

static ngx_int_t
ngx_http_conductor_redis_param(ngx_str_t *arg, const char *name,
    ngx_str_t *value)
{
    size_t  len;

    len = ngx_strlen(name);

    if (arg->len <= len || ngx_strncmp(arg->data, name, len) != 0
        || arg->data[len] != '=')
    {
        return NGX_DECLINED;
    }

    value->data = arg->data + len + 1;
    value->len = arg->len - len - 1;

    return NGX_OK;
}


static ngx_int_t
ngx_http_conductor_redis_printable(ngx_str_t *s)
{
    size_t  i;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] <= ' ' || s->data[i] >= 0x7f) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


#if (NGX_HTTP_SSL)

/*
 * rediss://: the server's certificate is verified against ca= (or the
 * system's trust store) and must name the url's host.
 */

static char *
ngx_http_conductor_redis_ssl_conf(ngx_conf_t *cf,
    ngx_http_conductor_redis_conf_t *rcf)
{
    ngx_str_t            ca;
    ngx_pool_cleanup_t  *cln;

    rcf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (rcf->ssl == NULL) {
        return NGX_CONF_ERROR;
    }

    rcf->ssl->log = cf->log;

    if (ngx_ssl_create(rcf->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(rcf->ssl);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = rcf->ssl;

    ca = rcf->ca;

    if (ngx_ssl_trusted_certificate(cf, rcf->ssl, &ca, 3) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot load the certificates of ca=\"%V\" of "
                           "conductor_redis", &rcf->ca);
        return NGX_CONF_ERROR;
    }

    if (ca.len == 0 && SSL_CTX_set_default_verify_paths(rcf->ssl->ctx) != 1) {
        ngx_ssl_error(NGX_LOG_EMERG, cf->log, 0,
                      "SSL_CTX_set_default_verify_paths() failed");
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "conductor_redis cannot use the system's trusted "
                           "certificates: give ca=");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}

#endif


/* a worker starts: its slot for the status, then the first connect */

ngx_int_t
ngx_http_conductor_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_http_conductor_redis_t       *rs;
    ngx_http_conductor_main_conf_t   *cmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_conductor_module);

    if (cmcf == NULL || cmcf->redis == NULL) {
        return NGX_OK;
    }

    rs = ngx_pcalloc(cycle->pool, sizeof(ngx_http_conductor_redis_t));
    if (rs == NULL) {
        return NGX_ERROR;
    }

    rs->conf = cmcf->redis;
    rs->backoff = NGX_HTTP_CONDUCTOR_REDIS_BACKOFF_MIN;

    ngx_queue_init(&rs->pending);
    ngx_queue_init(&rs->free);

    ngx_http_conductor_redis_slot(rs, cmcf, cycle);

    if (rs->me == NULL) {
        return NGX_ERROR;
    }

    /* the connection's own log names the server nginx's messages are of */
    rs->log = *cycle->log;
    rs->log.handler = ngx_http_conductor_redis_log_error;
    rs->log.data = rs;
    rs->log.action = NULL;
    rs->log_level = rs->log.log_level;

    rs->tick.handler = ngx_http_conductor_redis_tick_handler;
    rs->tick.data = rs;
    rs->tick.log = cycle->log;
    rs->tick.cancelable = 1;

    rs->watchdog.handler = ngx_http_conductor_redis_watchdog;
    rs->watchdog.data = rs;
    rs->watchdog.log = cycle->log;
    rs->watchdog.cancelable = 1;

    ngx_http_conductor_redis = rs;

    ngx_http_conductor_redis_set_state(rs, NGX_HTTP_CONDUCTOR_REDIS_DOWN);

    /* connected from the event loop, as every later attempt */
    ngx_add_timer(&rs->tick, 1);

    return NGX_OK;
}


/*
 * The counters live in the zone, so that the status answered by any worker
 * shows every worker's connection; a worker takes the slot of its pid, a
 * free one or a dead worker's.  Without a zone (or room in it), its own.
 */

static void
ngx_http_conductor_redis_slot(ngx_http_conductor_redis_t *rs,
    ngx_http_conductor_main_conf_t *cmcf, ngx_cycle_t *cycle)
{
    ngx_uint_t                          i;
    ngx_http_conductor_redis_sh_t      *sh;
    ngx_http_conductor_redis_worker_t  *w, *mine;

    mine = NULL;

    if (cmcf->sh) {
        ngx_http_conductor_shm_lock(cmcf);

        sh = cmcf->sh->redis;

        if (sh == NULL) {
            sh = ngx_slab_calloc_locked(cmcf->shpool,
                                        sizeof(ngx_http_conductor_redis_sh_t));
            cmcf->sh->redis = sh;
        }

        if (sh) {
            for (i = 0; i < NGX_HTTP_CONDUCTOR_SLOTS; i++) {
                w = &sh->workers[i];

                if (w->pid != 0 && w->pid != ngx_pid
                    && kill(w->pid, 0) == -1 && ngx_errno == NGX_ESRCH)
                {
                    w->pid = 0;    /* a worker killed: its slot is free */
                }

                if (mine == NULL && (w->pid == 0 || w->pid == ngx_pid)) {
                    mine = w;
                }
            }

            if (mine) {
                ngx_memzero(mine, sizeof(ngx_http_conductor_redis_worker_t));
                mine->pid = ngx_pid;
                rs->sh = sh;
                rs->me = mine;
            }
        }

        ngx_http_conductor_shm_unlock(cmcf);

        if (mine) {
            return;
        }

        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "redis: no room in the conductor zone for the "
                      "connection's counters: the status shows the "
                      "answering worker's only");
    }

    rs->sh = ngx_pcalloc(cycle->pool, sizeof(ngx_http_conductor_redis_sh_t));
    if (rs->sh == NULL) {
        return;
    }

    rs->me = &rs->sh->workers[0];
    rs->me->pid = ngx_pid;
}


static u_char *
ngx_http_conductor_redis_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    ngx_http_conductor_redis_t  *rs;

    rs = log->data;

    return ngx_snprintf(buf, len, " while talking to redis %V",
                        &rs->conf->url);
}


/*
 * Every sync= interval: the sync engine's hook while ready, and a PING
 * when nothing else went out since the last tick (a dead peer is found
 * within sync + timeout).  While down: a connection attempt, on the
 * backoff schedule.
 */

static void
ngx_http_conductor_redis_tick_handler(ngx_event_t *ev)
{
    ngx_http_conductor_redis_t  *rs;

    rs = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    switch (rs->state) {

    case NGX_HTTP_CONDUCTOR_REDIS_DOWN:
        ngx_http_conductor_redis_connect(rs);
        return;

    case NGX_HTTP_CONDUCTOR_REDIS_READY:
        if (ngx_http_conductor_redis_tick) {
            ngx_http_conductor_redis_tick(rs->conf);
        }

        if (rs->sent_since_tick == 0 && rs->npending == 0) {
            ngx_http_conductor_redis_ping(rs);
        }

        rs->sent_since_tick = 0;

        ngx_add_timer(ev, rs->conf->sync ? rs->conf->sync
                                         : NGX_HTTP_CONDUCTOR_REDIS_IDLE_TICK);
        return;

    default:
        /* connecting: ready or down re-arms it */
        return;
    }
}


/*
 * A connection attempt.  AUTH, CLIENT SETNAME, SELECT and PING are queued
 * at once: they go first when it is up, and their deadline bounds the
 * connect and the TLS handshake too (connect timeout = timeout=).
 */

static void
ngx_http_conductor_redis_connect(ngx_http_conductor_redis_t *rs)
{
    int                               n;
    u_char                           *p;
    ngx_int_t                         rc;
    ngx_addr_t                       *addr;
    ngx_pool_t                       *pool;
    ngx_connection_t                 *c;
    const char                       *argv[3];
    size_t                            argvlen[3];
    u_char                            db[NGX_INT_T_LEN];
    u_char                            name[sizeof("nginx-conductor-")
                                           + NGX_INT_T_LEN];
    ngx_http_conductor_redis_conf_t  *rcf;

    rcf = rs->conf;

    if (rs->attempts++) {
        (void) ngx_atomic_fetch_add(&rs->sh->reconnects, 1);
    }

    ngx_http_conductor_redis_set_state(rs,
                                       NGX_HTTP_CONDUCTOR_REDIS_CONNECTING);

    rs->reader = redisReaderCreate();
    if (rs->reader == NULL) {
        ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_ENOMEM, 0,
                                      "out of memory");
        return;
    }

    if (rcf->password.len) {
        n = 0;
        argv[n] = "AUTH";
        argvlen[n++] = 4;

        if (rcf->user.len) {
            argv[n] = (const char *) rcf->user.data;
            argvlen[n++] = rcf->user.len;
        }

        argv[n] = (const char *) rcf->password.data;
        argvlen[n++] = rcf->password.len;

        if (ngx_http_conductor_redis_append(rs, n, argv, argvlen,
                               ngx_http_conductor_redis_hello,
                               (void *) NGX_HTTP_CONDUCTOR_REDIS_AUTH, 1)
            == NULL)
        {
            goto nomem;
        }
    }

    /* CLIENT LIST tells nginx's workers apart */
    p = ngx_sprintf(name, "nginx-conductor-%P", ngx_pid);

    argv[0] = "CLIENT";
    argvlen[0] = 6;
    argv[1] = "SETNAME";
    argvlen[1] = 7;
    argv[2] = (const char *) name;
    argvlen[2] = p - name;

    if (ngx_http_conductor_redis_append(rs, 3, argv, argvlen,
                               ngx_http_conductor_redis_hello,
                               (void *) NGX_HTTP_CONDUCTOR_REDIS_SETNAME, 0)
        == NULL)
    {
        goto nomem;
    }

    if (rcf->db) {
        p = ngx_sprintf(db, "%ui", rcf->db);

        argv[0] = "SELECT";
        argvlen[0] = 6;
        argv[1] = (const char *) db;
        argvlen[1] = p - db;

        if (ngx_http_conductor_redis_append(rs, 2, argv, argvlen,
                                   ngx_http_conductor_redis_hello,
                                   (void *) NGX_HTTP_CONDUCTOR_REDIS_SELECT, 0)
            == NULL)
        {
            goto nomem;
        }
    }

    /* its PONG makes the connection ready: the server answers commands */
    argv[0] = "PING";
    argvlen[0] = 4;

    if (ngx_http_conductor_redis_append(rs, 1, argv, argvlen,
                               ngx_http_conductor_redis_hello,
                               (void *) NGX_HTTP_CONDUCTOR_REDIS_PING, 0)
        == NULL)
    {
        goto nomem;
    }

    pool = ngx_create_pool(1024, &rs->log);
    if (pool == NULL) {
        goto nomem;
    }

    addr = &rcf->addrs[rs->next_addr++ % rcf->naddrs];

    ngx_memzero(&rs->peer, sizeof(ngx_peer_connection_t));

    rs->peer.sockaddr = addr->sockaddr;
    rs->peer.socklen = addr->socklen;
    rs->peer.name = &addr->name;
    rs->peer.get = ngx_event_get_peer;
    rs->peer.log = &rs->log;
    rs->peer.log_error = NGX_ERROR_INFO;

    rc = ngx_event_connect_peer(&rs->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_destroy_pool(pool);
        ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_ECONNECT,
                                      0, "connect() failed");
        return;
    }

    c = rs->peer.connection;
    c->data = rs;
    c->pool = pool;
    c->read->handler = ngx_http_conductor_redis_read_handler;
    c->write->handler = ngx_http_conductor_redis_write_handler;
    rs->c = c;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, &rs->log, 0,
                   "redis: connecting to %V, fd:%d", rs->peer.name, c->fd);

    if (rc == NGX_OK) {
        ngx_http_conductor_redis_write_handler(c->write);
    }

    return;

nomem:

    ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_ENOMEM, 0,
                                  "out of memory");
}


static void
ngx_http_conductor_redis_write_handler(ngx_event_t *wev)
{
    int                          err;
    socklen_t                    len;
    ngx_connection_t            *c;
    ngx_http_conductor_redis_t  *rs;

    c = wev->data;
    rs = c->data;

    if (!rs->connected) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
            == -1)
        {
            err = ngx_socket_errno;
        }

        if (err) {
            ngx_http_conductor_redis_fail(rs,
                                          NGX_HTTP_CONDUCTOR_REDIS_ECONNECT,
                                          err, "connect() failed");
            return;
        }

        rs->connected = 1;

        /*
         * a command is a few hundred bytes that must leave at once: Nagle
         * would hold it behind an unacknowledged one (hiredis sets this too)
         */
        (void) ngx_tcp_nodelay(c);

#if (NGX_HTTP_SSL)
        if (rs->conf->tls) {
            ngx_http_conductor_redis_tls(rs);
            return;
        }
#endif

        rs->established = 1;
    }

    if (rs->established) {
        ngx_http_conductor_redis_flush(rs);
    }
}


#if (NGX_HTTP_SSL)

static void
ngx_http_conductor_redis_tls(ngx_http_conductor_redis_t *rs)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    c = rs->c;

    if (ngx_ssl_create_connection(rs->conf->ssl, c, NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_ETLS, 0,
                                      "cannot start TLS");
        return;
    }

    if (!rs->conf->host_is_ip
        && SSL_set_tlsext_host_name(c->ssl->connection,
                                    (char *) rs->conf->host.data)
           == 0)
    {
        ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_ETLS, 0,
                                      "cannot set the TLS server name");
        return;
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_http_conductor_redis_tls_done;
        return;
    }

    ngx_http_conductor_redis_tls_done(c);
}


static void
ngx_http_conductor_redis_tls_done(ngx_connection_t *c)
{
    long                         rc;
    u_char                       msg[256];
    ngx_http_conductor_redis_t  *rs;

    rs = c->data;

    if (!c->ssl->handshaked) {
        ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_ETLS, 0,
                                      "TLS handshake failed");
        return;
    }

    rc = SSL_get_verify_result(c->ssl->connection);

    if (rc != X509_V_OK) {
        ngx_snprintf(msg, sizeof(msg), "certificate verify error: (%l:%s)%Z",
                     rc, X509_verify_cert_error_string(rc));
        msg[sizeof(msg) - 1] = '\0';

        ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_EVERIFY, 0,
                                      (const char *) msg);
        return;
    }

    if (ngx_http_conductor_redis_check_name(rs, c) != NGX_OK) {
        ngx_snprintf(msg, sizeof(msg),
                     "the certificate does not name \"%V\"%Z",
                     &rs->conf->host);
        msg[sizeof(msg) - 1] = '\0';

        ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_EVERIFY, 0,
                                      (const char *) msg);
        return;
    }

    c->read->handler = ngx_http_conductor_redis_read_handler;
    c->write->handler = ngx_http_conductor_redis_write_handler;

    rs->established = 1;

    ngx_http_conductor_redis_flush(rs);
}


/* the url's host, a name or an address, must be the certificate's */

static ngx_int_t
ngx_http_conductor_redis_check_name(ngx_http_conductor_redis_t *rs,
    ngx_connection_t *c)
{
    int    rc;
    X509  *cert;

    cert = SSL_get_peer_certificate(c->ssl->connection);
    if (cert == NULL) {
        return NGX_ERROR;
    }

    if (rs->conf->host_is_ip) {
        rc = X509_check_ip_asc(cert, (char *) rs->conf->host.data, 0);

    } else {
        rc = X509_check_host(cert, (char *) rs->conf->host.data,
                             rs->conf->host.len, 0, NULL);
    }

    X509_free(cert);

    return (rc == 1) ? NGX_OK : NGX_ERROR;
}

#endif


/* the queued commands go out, as many as the socket takes */

static void
ngx_http_conductor_redis_flush(ngx_http_conductor_redis_t *rs)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = rs->c;

    while (rs->out_pos < rs->out_last) {
        n = c->send(c, rs->out_pos, rs->out_last - rs->out_pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_http_conductor_redis_fail(rs,
                                             NGX_HTTP_CONDUCTOR_REDIS_ECONNECT,
                                             0, "cannot wait to send");
            }

            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_conductor_redis_fail(rs,
                                          NGX_HTTP_CONDUCTOR_REDIS_ECONNECT,
                                          0, "send() failed");
            return;
        }

        rs->out_pos += n;
    }

    (void) ngx_atomic_fetch_add(&rs->sh->commands, rs->unsent);
    rs->unsent = 0;

    if (rs->secret_out) {
        /* AUTH's bytes do not outlive their sending */
        ngx_explicit_memzero(rs->out_start, rs->out_end - rs->out_start);
        rs->secret_out = 0;
    }

    if (rs->out_end - rs->out_start > NGX_HTTP_CONDUCTOR_REDIS_OUT_KEEP) {
        ngx_free(rs->out_start);
        rs->out_start = NULL;
        rs->out_end = NULL;
    }

    rs->out_pos = rs->out_start;
    rs->out_last = rs->out_start;
}


static void
ngx_http_conductor_redis_read_handler(ngx_event_t *rev)
{
    ssize_t                      n;
    ngx_uint_t                   generation;
    redisReply                  *reply;
    ngx_connection_t            *c;
    ngx_http_conductor_redis_t  *rs;
    u_char                       buf[16384];

    c = rev->data;
    rs = c->data;

    if (!rs->connected) {
        /* a refused connect shows on the read side too */
        ngx_http_conductor_redis_write_handler(c->write);
        return;
    }

    generation = rs->generation;

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            if (ngx_handle_read_event(rev, 0) != NGX_OK) {
                ngx_http_conductor_redis_fail(rs,
                                             NGX_HTTP_CONDUCTOR_REDIS_ECONNECT,
                                             0, "cannot wait to read");
            }

            return;
        }

        if (n == 0) {
            ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_ECLOSED,
                                          0, "the server closed the "
                                          "connection");
            return;
        }

        if (n == NGX_ERROR) {
            ngx_http_conductor_redis_fail(rs,
                                          NGX_HTTP_CONDUCTOR_REDIS_ECONNECT,
                                          0, "recv() failed");
            return;
        }

        if (redisReaderFeed(rs->reader, (const char *) buf, n) != REDIS_OK) {
            ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_ENOMEM,
                                          0, "out of memory");
            return;
        }

        for ( ;; ) {
            reply = NULL;

            if (redisReaderGetReply(rs->reader, (void **) &reply)
                != REDIS_OK)
            {
                ngx_http_conductor_redis_fail(rs,
                                            NGX_HTTP_CONDUCTOR_REDIS_EPROTOCOL,
                                            0, "protocol error");
                return;
            }

            if (reply == NULL) {
                break;
            }

            ngx_http_conductor_redis_dispatch(rs, reply);

            if (rs->generation != generation) {
                /* a reply closed the connection (a failed AUTH) */
                return;
            }
        }
    }
}


/* a reply is the oldest pending command's */

static void
ngx_http_conductor_redis_dispatch(ngx_http_conductor_redis_t *rs,
    redisReply *reply)
{
    ngx_queue_t                     *q;
    ngx_http_conductor_redis_cmd_t  *cmd;

    if (ngx_queue_empty(&rs->pending)) {
        freeReplyObject(reply);
        ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_EPROTOCOL,
                                      0, "a reply to no command");
        return;
    }

    q = ngx_queue_head(&rs->pending);
    ngx_queue_remove(q);
    rs->npending--;
    rs->me->pending = rs->npending;

    cmd = ngx_queue_data(q, ngx_http_conductor_redis_cmd_t, queue);

    if (reply->type == REDIS_REPLY_ERROR) {
        (void) ngx_atomic_fetch_add(&rs->sh->errors, 1);
        (void) ngx_atomic_fetch_add(&rs->sh->error_replies, 1);

    } else {
        rs->me->last_reply = ngx_http_conductor_now_ms();
    }

    if (rs->npending == 0 && rs->watchdog.timer_set) {
        ngx_del_timer(&rs->watchdog);
    }

    if (cmd->handler) {
        cmd->handler(cmd->data, reply);
    }

    freeReplyObject(reply);

    ngx_http_conductor_redis_free_cmd(rs, cmd);
}


/* the replies to the commands that open a connection */

static void
ngx_http_conductor_redis_hello(void *data, redisReply *reply)
{
    size_t                       len;
    u_char                      *p;
    ngx_uint_t                   kind;
    ngx_http_conductor_redis_t  *rs;
    u_char                       msg[256];

    kind = (ngx_uint_t) (uintptr_t) data;
    rs = ngx_http_conductor_redis;

    if (reply == NULL || rs == NULL) {
        return;
    }

    if (reply->type != REDIS_REPLY_ERROR) {
        if (kind == NGX_HTTP_CONDUCTOR_REDIS_PING) {
            ngx_http_conductor_redis_ready(rs);
        }

        return;
    }

    if (kind == NGX_HTTP_CONDUCTOR_REDIS_SETNAME) {
        /* a user without the right to name its connection still works */
        return;
    }

    len = (reply->str && reply->len > 0) ? (size_t) reply->len : 0;

    if (kind == NGX_HTTP_CONDUCTOR_REDIS_AUTH) {
        /* the error's code only (WRONGPASS): no text of the server's */
        p = ngx_strlchr((u_char *) reply->str, (u_char *) reply->str + len,
                        ' ');
        len = p ? (size_t) (p - (u_char *) reply->str) : len;

        ngx_snprintf(msg, sizeof(msg), "%*s%Z", ngx_min(len, 64), reply->str);
        msg[sizeof(msg) - 1] = '\0';

        ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_EAUTH, 0,
                                      (const char *) msg);
        return;
    }

    if (len >= 6 && ngx_strncmp(reply->str, "NOAUTH", 6) == 0) {
        ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_EAUTH, 0,
                                      "NOAUTH: the server needs a password=");
        return;
    }

    ngx_snprintf(msg, sizeof(msg), "%s refused: %*s%Z",
                 kind == NGX_HTTP_CONDUCTOR_REDIS_SELECT ? "SELECT" : "PING",
                 ngx_min(len, 160), reply->str);
    msg[sizeof(msg) - 1] = '\0';

    ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_EHELLO, 0,
                                  (const char *) msg);
}


static void
ngx_http_conductor_redis_ready(ngx_http_conductor_redis_t *rs)
{
    ngx_http_conductor_redis_set_state(rs, NGX_HTTP_CONDUCTOR_REDIS_READY);

    rs->log.log_level = rs->log_level;

    ngx_log_error(NGX_LOG_NOTICE, ngx_cycle->log, 0,
                  rs->was_ready ? "redis: %V is ready again"
                                : "redis: %V is ready",
                  &rs->conf->url);

    rs->was_ready = 1;
    rs->reason = NGX_HTTP_CONDUCTOR_REDIS_OK;
    rs->backoff = NGX_HTTP_CONDUCTOR_REDIS_BACKOFF_MIN;
    rs->sent_since_tick = 0;

    if (rs->tick.timer_set) {
        ngx_del_timer(&rs->tick);
    }

    ngx_add_timer(&rs->tick, rs->conf->sync
                             ? rs->conf->sync
                             : NGX_HTTP_CONDUCTOR_REDIS_IDLE_TICK);
}


/*
 * A command for Redis: NGX_OK when it is queued (*cmd, if asked for, can
 * cancel it until its handler runs), NGX_DECLINED at once when the
 * connection is not ready or too many wait (the caller falls back),
 * NGX_ERROR without memory.  The handler is never called from inside this
 * function: its bytes go out when the event loop next runs.
 */

ngx_int_t
ngx_http_conductor_redis_command(ngx_uint_t argc, const char **argv,
    const size_t *argvlen, ngx_http_conductor_redis_handler_pt handler,
    void *data, ngx_http_conductor_redis_cmd_t **cmd)
{
    ngx_http_conductor_redis_t      *rs;
    ngx_http_conductor_redis_cmd_t  *rc;

    rs = ngx_http_conductor_redis;

    if (rs == NULL || rs->state != NGX_HTTP_CONDUCTOR_REDIS_READY
        || rs->npending >= NGX_HTTP_CONDUCTOR_REDIS_MAX_PENDING)
    {
        return NGX_DECLINED;
    }

    rc = ngx_http_conductor_redis_append(rs, argc, argv, argvlen, handler,
                                         data, 0);
    if (rc == NULL) {
        return NGX_ERROR;
    }

    if (cmd) {
        *cmd = rc;
    }

    return NGX_OK;
}


/* its handler will not run; its reply is still read and dropped */

void
ngx_http_conductor_redis_cancel(ngx_http_conductor_redis_cmd_t *cmd)
{
    cmd->handler = NULL;
    cmd->data = NULL;
}


/* changes with every connection: what a script load was sent on */

ngx_uint_t
ngx_http_conductor_redis_generation(void)
{
    return ngx_http_conductor_redis ? ngx_http_conductor_redis->generation
                                    : 0;
}


ngx_uint_t
ngx_http_conductor_redis_state(void)
{
    return ngx_http_conductor_redis ? ngx_http_conductor_redis->state
                                    : NGX_HTTP_CONDUCTOR_REDIS_DOWN;
}


static ngx_http_conductor_redis_cmd_t *
ngx_http_conductor_redis_append(ngx_http_conductor_redis_t *rs,
    ngx_uint_t argc, const char **argv, const size_t *argvlen,
    ngx_http_conductor_redis_handler_pt handler, void *data,
    ngx_uint_t secret)
{
    size_t                           len;
    ngx_queue_t                     *q;
    ngx_connection_t                *c;
    ngx_http_conductor_redis_cmd_t  *cmd;

    len = ngx_http_conductor_resp_len(argc, argvlen);

    if (ngx_http_conductor_redis_room(rs, len) != NGX_OK) {
        return NULL;
    }

    if (!ngx_queue_empty(&rs->free)) {
        q = ngx_queue_head(&rs->free);
        ngx_queue_remove(q);
        rs->nfree--;
        cmd = ngx_queue_data(q, ngx_http_conductor_redis_cmd_t, queue);

    } else {
        cmd = ngx_alloc(sizeof(ngx_http_conductor_redis_cmd_t), &rs->log);
        if (cmd == NULL) {
            return NULL;
        }
    }

    /* written in place: the only copy of a secret is the output buffer */
    rs->out_last = ngx_http_conductor_resp_write(rs->out_last, argc, argv,
                                                 argvlen);

    if (secret) {
        rs->secret_out = 1;
    }

    cmd->handler = handler;
    cmd->data = data;
    cmd->deadline = ngx_current_msec + rs->conf->timeout;

    ngx_queue_insert_tail(&rs->pending, &cmd->queue);
    rs->npending++;
    rs->me->pending = rs->npending;
    rs->sent_since_tick++;
    rs->unsent++;

    /* one timer for the queue: the oldest command's deadline */
    if (!rs->watchdog.timer_set) {
        ngx_add_timer(&rs->watchdog, rs->conf->timeout);
    }

    /* the commands of this turn of the event loop go out together */
    c = rs->c;

    if (c && rs->established && c->write->ready && !c->write->posted) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return cmd;
}


static ngx_int_t
ngx_http_conductor_redis_room(ngx_http_conductor_redis_t *rs, size_t len)
{
    size_t   used, size;
    u_char  *p;

    if ((size_t) (rs->out_end - rs->out_last) >= len) {
        return NGX_OK;
    }

    used = rs->out_last - rs->out_pos;
    size = rs->out_end - rs->out_start;

    if (size >= used + len && rs->out_pos > rs->out_start) {
        ngx_memmove(rs->out_start, rs->out_pos, used);
        rs->out_pos = rs->out_start;
        rs->out_last = rs->out_start + used;
        return NGX_OK;
    }

    size = ngx_max(size * 2, NGX_HTTP_CONDUCTOR_REDIS_OUT_SIZE);

    while (size < used + len) {
        size *= 2;
    }

    p = ngx_alloc(size, &rs->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (rs->out_start) {
        ngx_memcpy(p, rs->out_pos, used);

        if (rs->secret_out) {
            ngx_explicit_memzero(rs->out_start, rs->out_end - rs->out_start);
        }

        ngx_free(rs->out_start);
    }

    rs->out_start = p;
    rs->out_pos = p;
    rs->out_last = p + used;
    rs->out_end = p + size;

    return NGX_OK;
}


static void
ngx_http_conductor_redis_ping(ngx_http_conductor_redis_t *rs)
{
    const char  *argv[1] = { "PING" };
    size_t       argvlen[1] = { 4 };

    (void) ngx_http_conductor_redis_append(rs, 1, argv, argvlen, NULL, NULL,
                                           0);
}


/* the oldest pending command is past its deadline: Redis is not answering */

static void
ngx_http_conductor_redis_watchdog(ngx_event_t *ev)
{
    ngx_msec_int_t                   left;
    ngx_http_conductor_redis_t      *rs;
    ngx_http_conductor_redis_cmd_t  *cmd;
    u_char                           msg[64];

    rs = ev->data;

    if (ngx_queue_empty(&rs->pending)) {
        return;
    }

    cmd = ngx_queue_data(ngx_queue_head(&rs->pending),
                         ngx_http_conductor_redis_cmd_t, queue);

    left = (ngx_msec_int_t) (cmd->deadline - ngx_current_msec);

    if (left > 0) {
        ngx_add_timer(ev, (ngx_msec_t) left);
        return;
    }

    /* which step hung tells a firewall from a TLS mismatch from a hung
     * server */
    ngx_snprintf(msg, sizeof(msg), "%s within %Mms%Z",
                 !rs->connected ? "not connected"
                 : !rs->established ? "no TLS handshake" : "no reply",
                 rs->conf->timeout);
    msg[sizeof(msg) - 1] = '\0';

    ngx_http_conductor_redis_fail(rs, NGX_HTTP_CONDUCTOR_REDIS_ETIMEOUT, 0,
                                  (const char *) msg);
}


/*
 * The connection is down: closed, every pending handler told (NULL), the
 * next attempt scheduled.  Logged once per change: when it was ready, or
 * when the reason is not the last one's (a refused connect, then a wrong
 * password); nginx's own messages about the attempts that follow are
 * quietened likewise.
 */

static void
ngx_http_conductor_redis_fail(ngx_http_conductor_redis_t *rs,
    ngx_uint_t reason, ngx_err_t err, const char *what)
{
    ngx_uint_t  was_ready, level;
    ngx_msec_t  delay;

    was_ready = (rs->state == NGX_HTTP_CONDUCTOR_REDIS_READY);

    ngx_http_conductor_redis_close(rs);

    /* counted before the state shows: a reader sees no down without it;
     * a refused AUTH or SELECT was counted as the error reply it is */
    if (reason == NGX_HTTP_CONDUCTOR_REDIS_ETIMEOUT) {
        (void) ngx_atomic_fetch_add(&rs->sh->errors, 1);
        (void) ngx_atomic_fetch_add(&rs->sh->timeouts, 1);

    } else if (reason != NGX_HTTP_CONDUCTOR_REDIS_EAUTH
               && reason != NGX_HTTP_CONDUCTOR_REDIS_EHELLO)
    {
        (void) ngx_atomic_fetch_add(&rs->sh->errors, 1);
        (void) ngx_atomic_fetch_add(&rs->sh->conn_errors, 1);
    }

    ngx_http_conductor_redis_set_state(rs, NGX_HTTP_CONDUCTOR_REDIS_DOWN);

    if (was_ready || reason != rs->reason) {
        if (reason == NGX_HTTP_CONDUCTOR_REDIS_EAUTH) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "redis: authentication failed (%s): %V is down",
                          what, &rs->conf->url);

        } else {
            level = (reason == NGX_HTTP_CONDUCTOR_REDIS_EVERIFY)
                    ? NGX_LOG_ERR : NGX_LOG_WARN;

            ngx_log_error(level, ngx_cycle->log, err,
                          "redis: %V is down: %s; reconnecting in the "
                          "background", &rs->conf->url, what);
        }

        /* nginx's messages of this attempt said why: not the next ones'
         * (but at debug level everything is logged) */
        if (rs->log_level < NGX_LOG_DEBUG) {
            rs->log.log_level = ngx_min(rs->log_level, NGX_LOG_ALERT);
        }
    }

    rs->reason = reason;

    ngx_http_conductor_redis_abort(rs);

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (rs->next_addr % rs->conf->naddrs != 0) {
        /* the host's next address (::1, then 127.0.0.1) is tried now */
        delay = 1;

    } else {
        /* a little jitter keeps the workers of a fleet out of step */
        delay = rs->backoff
                + (ngx_msec_t) ngx_random() % (rs->backoff / 5 + 1);

        rs->backoff = ngx_min(rs->backoff * 2,
                              NGX_HTTP_CONDUCTOR_REDIS_BACKOFF_MAX);
    }

    if (rs->tick.timer_set) {
        ngx_del_timer(&rs->tick);
    }

    ngx_add_timer(&rs->tick, delay);
}


static void
ngx_http_conductor_redis_close(ngx_http_conductor_redis_t *rs)
{
    ngx_pool_t        *pool;
    ngx_connection_t  *c;

    c = rs->c;

    if (c) {
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
        rs->c = NULL;
    }

    if (rs->reader) {
        redisReaderFree(rs->reader);
        rs->reader = NULL;
    }

    if (rs->secret_out) {
        ngx_explicit_memzero(rs->out_start, rs->out_end - rs->out_start);
        rs->secret_out = 0;
    }

    rs->out_pos = rs->out_start;
    rs->out_last = rs->out_start;
    rs->unsent = 0;
    rs->connected = 0;
    rs->established = 0;
    rs->generation++;
}


/* every pending handler gets NULL, now: its caller falls back at once */

static void
ngx_http_conductor_redis_abort(ngx_http_conductor_redis_t *rs)
{
    ngx_queue_t                      failed, *q;
    ngx_http_conductor_redis_cmd_t  *cmd;

    if (rs->watchdog.timer_set) {
        ngx_del_timer(&rs->watchdog);
    }

    if (ngx_queue_empty(&rs->pending)) {
        return;
    }

    /* taken off first: a handler that sends a command finds it down */
    failed = rs->pending;
    failed.next->prev = &failed;
    failed.prev->next = &failed;
    ngx_queue_init(&rs->pending);
    rs->npending = 0;
    rs->me->pending = 0;

    while (!ngx_queue_empty(&failed)) {
        q = ngx_queue_head(&failed);
        ngx_queue_remove(q);

        cmd = ngx_queue_data(q, ngx_http_conductor_redis_cmd_t, queue);

        if (cmd->handler) {
            cmd->handler(cmd->data, NULL);
        }

        ngx_http_conductor_redis_free_cmd(rs, cmd);
    }
}


static void
ngx_http_conductor_redis_free_cmd(ngx_http_conductor_redis_t *rs,
    ngx_http_conductor_redis_cmd_t *cmd)
{
    if (rs->nfree >= NGX_HTTP_CONDUCTOR_REDIS_FREE_MAX) {
        ngx_free(cmd);
        return;
    }

    ngx_queue_insert_head(&rs->free, &cmd->queue);
    rs->nfree++;
}


static void
ngx_http_conductor_redis_set_state(ngx_http_conductor_redis_t *rs,
    ngx_uint_t state)
{
    rs->state = state;
    rs->me->state = state;
}


/* a worker exits: the connection closes, what waits fails, the slot frees */

void
ngx_http_conductor_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t                     *q;
    ngx_http_conductor_redis_t      *rs;
    ngx_http_conductor_redis_cmd_t  *cmd;

    rs = ngx_http_conductor_redis;

    if (rs == NULL) {
        return;
    }

    ngx_http_conductor_redis_close(rs);
    ngx_http_conductor_redis_set_state(rs, NGX_HTTP_CONDUCTOR_REDIS_DOWN);
    ngx_http_conductor_redis_abort(rs);

    if (rs->tick.timer_set) {
        ngx_del_timer(&rs->tick);
    }

    while (!ngx_queue_empty(&rs->free)) {
        q = ngx_queue_head(&rs->free);
        ngx_queue_remove(q);
        cmd = ngx_queue_data(q, ngx_http_conductor_redis_cmd_t, queue);
        ngx_free(cmd);
    }

    rs->nfree = 0;

    if (rs->out_start) {
        ngx_free(rs->out_start);
        rs->out_start = NULL;
    }

    rs->me->pid = 0;

    ngx_http_conductor_redis = NULL;
}


/*
 * The status output's "redis": the url (never a secret), and over every
 * worker's connection the worst state, the oldest last reply, and the
 * counters.
 */

ngx_int_t
ngx_http_conductor_redis_status(json_t *obj)
{
    json_t                             *redis, *age;
    uint64_t                            now, oldest;
    ngx_uint_t                          i, worst, pending, never, live;
    ngx_uint_t                          count[3];
    ngx_http_conductor_redis_sh_t      *sh;
    ngx_http_conductor_redis_conf_t    *rcf;
    ngx_http_conductor_main_conf_t     *cmcf;
    ngx_http_conductor_redis_worker_t  *w;

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_conductor_module);

    if (cmcf == NULL || cmcf->redis == NULL) {
        return NGX_OK;
    }

    rcf = cmcf->redis;

    sh = ngx_http_conductor_redis ? ngx_http_conductor_redis->sh : NULL;

    now = ngx_http_conductor_now_ms();
    oldest = now;
    worst = NGX_HTTP_CONDUCTOR_REDIS_READY;
    pending = 0;
    never = 0;
    live = 0;
    count[0] = 0;
    count[1] = 0;
    count[2] = 0;

    for (i = 0; sh && i < NGX_HTTP_CONDUCTOR_SLOTS; i++) {
        w = &sh->workers[i];

        if (w->pid == 0 || w->state > NGX_HTTP_CONDUCTOR_REDIS_READY) {
            continue;
        }

        live++;
        count[w->state]++;
        worst = ngx_min(worst, w->state);
        pending += w->pending;

        if (w->last_reply == 0) {
            never = 1;

        } else if (w->last_reply < oldest) {
            oldest = w->last_reply;
        }
    }

    if (live == 0) {
        worst = NGX_HTTP_CONDUCTOR_REDIS_DOWN;
    }

    age = (live == 0 || never) ? json_null()
                               : json_integer((json_int_t) (now - oldest));

    redis = json_pack("{s:s#, s:b, s:I, s:s#, s:s, s:{s:I, s:I, s:I},"
                      " s:o, s:I, s:I, s:I, s:{s:I, s:I, s:I}, s:I,"
                      " s:I, s:I, s:s}",
                      "url", rcf->url.data, (int) rcf->url.len,
                      "tls", (int) rcf->tls,
                      "db", (json_int_t) rcf->db,
                      "prefix", rcf->prefix.data, (int) rcf->prefix.len,
                      "state", ngx_http_conductor_redis_states[worst],
                      "workers",
                          "ready", (json_int_t) count[2],
                          "connecting", (json_int_t) count[1],
                          "down", (json_int_t) count[0],
                      "last_reply_age_ms", age,
                      "pending", (json_int_t) pending,
                      "commands", (json_int_t) (sh ? sh->commands : 0),
                      "errors", (json_int_t) (sh ? sh->errors : 0),
                      "error_kinds",
                          "timeout", (json_int_t) (sh ? sh->timeouts : 0),
                          "connection",
                              (json_int_t) (sh ? sh->conn_errors : 0),
                          "reply", (json_int_t) (sh ? sh->error_replies : 0),
                      "reconnects", (json_int_t) (sh ? sh->reconnects : 0),
                      "sync_ms", (json_int_t) rcf->sync,
                      "timeout_ms", (json_int_t) rcf->timeout,
                      "on_failure",
                      rcf->on_failure == NGX_HTTP_CONDUCTOR_REDIS_REFUSE
                      ? "refuse" : "local");
    if (redis == NULL) {
        return NGX_ERROR;
    }

    /* the fleet's pushes (sync.c): the last one answered, the failed */
    if (json_object_set_new(redis, "last_sync_age_ms",
                            cmcf->sh && cmcf->sh->sync_last
                            ? json_integer((json_int_t)
                                           (now - ngx_min(now,
                                                  cmcf->sh->sync_last)))
                            : json_null())
           != 0
        || json_object_set_new(redis, "sync_errors",
                               json_integer((json_int_t)
                                   (cmcf->sh ? cmcf->sh->sync_errors : 0)))
           != 0)
    {
        json_decref(redis);
        return NGX_ERROR;
    }

    if (json_object_set_new(obj, "redis", redis) != 0) {
        return NGX_ERROR;
    }

    return NGX_OK;
}
