/*
 * Client keys out of the error log (issue 9).  nginx logs every request
 * header at debug level while it reads them ("http header: ..."), and some
 * lines at other levels quote a header ("client sent invalid header line:
 * ..."), before any phase of a module runs.  So every log an http request
 * can write to gets a writer (ngx_log_t's writer / wdata, as syslog and
 * the memory log have) that takes the secret values out of the line
 * (ngx_http_conductor_redact_line.c) and then writes it where nginx would
 * have: the file, or the log's own writer.
 *
 * A connection's log is a copy of its server's or location's
 * (ngx_set_connection_log() copies writer and wdata; a listening socket
 * copies its server's log when the cycle starts), so setting the writer on
 * the configured logs covers the lines logged while headers are read.
 *
 * Our writers are code of this module: when the cycle's pool is destroyed
 * (a worker's exit, an old cycle after a reload) load_module's cleanup
 * unloads it, and the pool's debug lines after that go to cycle->log.  So
 * every log gets its own writer back first.
 */


#include "ngx_http_conductor.h"
#include "ngx_http_conductor_redact_line.h"


typedef struct {
    ngx_cycle_t                      *cycle;
    ngx_array_t                       logs;      /* ngx_log_t *: ours */
} ngx_http_conductor_redact_t;


static ngx_int_t ngx_http_conductor_redact_loc(
    ngx_http_conductor_redact_t *rd, ngx_http_core_loc_conf_t *clcf);
static ngx_int_t ngx_http_conductor_redact_tree(
    ngx_http_conductor_redact_t *rd, ngx_http_location_tree_node_t *node);
static ngx_int_t ngx_http_conductor_redact_logs(
    ngx_http_conductor_redact_t *rd, ngx_log_t *log, ngx_uint_t again);
static void ngx_http_conductor_redact_cycle(void *data);
static ngx_int_t ngx_http_conductor_redact_on_exit(
    ngx_http_conductor_redact_t *rd);
static void ngx_http_conductor_redact_restore(void *data);
static void ngx_http_conductor_redact_file_writer(ngx_log_t *log,
    ngx_uint_t level, u_char *buf, size_t len);
static void ngx_http_conductor_redact_wrap_writer(ngx_log_t *log,
    ngx_uint_t level, u_char *buf, size_t len);
static u_char *ngx_http_conductor_redact_buf(u_char *buf, size_t *len,
    u_char *out);


/*
 * At postconfiguration the location trees are built (ngx_http_block()
 * runs ngx_http_init_static_location_trees() first): every server, its
 * static tree, regex and named locations, nested ones, limit_except.  An
 * "if" block cannot set error_log: it shares its location's log.
 */

ngx_int_t
ngx_http_conductor_redact_init(ngx_conf_t *cf)
{
    ngx_uint_t                    s;
    ngx_pool_cleanup_t           *cln;
    ngx_http_core_loc_conf_t     *clcf, **named;
    ngx_http_core_srv_conf_t    **cscfp;
    ngx_http_core_main_conf_t    *cmcf;
    ngx_http_conductor_redact_t  *rd;

    rd = ngx_palloc(cf->pool, sizeof(ngx_http_conductor_redact_t));
    if (rd == NULL) {
        return NGX_ERROR;
    }

    rd->cycle = cf->cycle;

    if (ngx_array_init(&rd->logs, cf->pool, 8, sizeof(ngx_log_t *))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* before anything is wrapped: from here on a failure unwraps too */
    if (ngx_http_conductor_redact_on_exit(rd) != NGX_OK) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    /* http{}'s own error_log, NULL when it has none */
    if (ngx_http_conductor_redact_logs(rd, clcf->error_log, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    cscfp = cmcf->servers.elts;

    for (s = 0; s < cmcf->servers.nelts; s++) {
        clcf = cscfp[s]->ctx->loc_conf[ngx_http_core_module.ctx_index];

        if (ngx_http_conductor_redact_loc(rd, clcf) != NGX_OK) {
            return NGX_ERROR;
        }

        for (named = cscfp[s]->named_locations; named && *named; named++) {
            if (ngx_http_conductor_redact_loc(rd, *named) != NGX_OK) {
                return NGX_ERROR;
            }
        }
    }

    /* the main error_log lines, where every location without one logs */
    if (ngx_http_conductor_redact_logs(rd, &cf->cycle->new_log, 0)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /*
     * Main error_log lines after http{}, and the default log nginx opens
     * when there is none, come later; the temporary pool of the
     * configuration is destroyed once the cycle is ready, before any
     * worker runs: look again then.
     */

    cln = ngx_pool_cleanup_add(cf->temp_pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_conductor_redact_cycle;
    cln->data = rd;

    return NGX_OK;
}


static ngx_int_t
ngx_http_conductor_redact_loc(ngx_http_conductor_redact_t *rd,
    ngx_http_core_loc_conf_t *clcf)
{
#if (NGX_PCRE)
    ngx_http_core_loc_conf_t  **regex;
#endif

    if (ngx_http_conductor_redact_logs(rd, clcf->error_log, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    /* a limit_except block's conf becomes the request's for its methods */
    if (clcf->limit_except_loc_conf
        && ngx_http_conductor_redact_loc(rd,
               clcf->limit_except_loc_conf[ngx_http_core_module.ctx_index])
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_http_conductor_redact_tree(rd, clcf->static_locations)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

#if (NGX_PCRE)

    for (regex = clcf->regex_locations; regex && *regex; regex++) {
        if (ngx_http_conductor_redact_loc(rd, *regex) != NGX_OK) {
            return NGX_ERROR;
        }
    }

#endif

    return NGX_OK;
}


static ngx_int_t
ngx_http_conductor_redact_tree(ngx_http_conductor_redact_t *rd,
    ngx_http_location_tree_node_t *node)
{
    if (node == NULL) {
        return NGX_OK;
    }

    if ((node->exact
         && ngx_http_conductor_redact_loc(rd, node->exact) != NGX_OK)
        || (node->inclusive
            && ngx_http_conductor_redact_loc(rd, node->inclusive) != NGX_OK)
        || ngx_http_conductor_redact_tree(rd, node->left) != NGX_OK
        || ngx_http_conductor_redact_tree(rd, node->right) != NGX_OK
        || ngx_http_conductor_redact_tree(rd, node->tree) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * Every log of a chain, once: logs are shared by the locations that
 * inherit them, and the main chain is walked again after the
 * configuration.  Each log given our writer is recorded, to be given its
 * own back; walked "again", one that has ours already is recorded too: a
 * later main error_log line can swap a head's contents with its own
 * (ngx_log_insert()), so ours may have moved to another log.
 */

static ngx_int_t
ngx_http_conductor_redact_logs(ngx_http_conductor_redact_t *rd,
    ngx_log_t *log, ngx_uint_t again)
{
    ngx_log_t  *orig, **logp;

    for ( /* void */ ; log; log = log->next) {

        if (log->writer == ngx_http_conductor_redact_file_writer
            || log->writer == ngx_http_conductor_redact_wrap_writer)
        {
            if (!again) {
                continue;
            }

        } else if (log->writer == NULL) {
            log->writer = ngx_http_conductor_redact_file_writer;

        } else {
            /* syslog, memory: the log as it was, its writer and wdata */

            orig = ngx_palloc(rd->cycle->pool, sizeof(ngx_log_t));
            if (orig == NULL) {
                return NGX_ERROR;
            }

            *orig = *log;
            orig->next = NULL;

            log->writer = ngx_http_conductor_redact_wrap_writer;
            log->wdata = orig;
        }

        logp = ngx_array_push(&rd->logs);
        if (logp == NULL) {
            return NGX_ERROR;
        }

        *logp = log;
    }

    return NGX_OK;
}


/* the configuration is done: the main chain again, and listening copies */

static void
ngx_http_conductor_redact_cycle(void *data)
{
    ngx_http_conductor_redact_t *rd = data;

    ngx_uint_t        i;
    ngx_cycle_t      *cycle;
    ngx_listening_t  *ls;

    cycle = rd->cycle;

    /*
     * The cleanup of postconfiguration runs after those registered since
     * (a memory log's, which lets go of its buffer); this one, the last
     * registered, runs first.
     */

    if (ngx_http_conductor_redact_on_exit(rd) != NGX_OK
        || ngx_http_conductor_redact_logs(rd, &cycle->new_log, 1) != NGX_OK)
    {
        goto failed;
    }

    /* copied from a server's log before we get here (a swapped head) */

    ls = cycle->listening.elts;

    for (i = 0; i < cycle->listening.nelts; i++) {
        if (ls[i].handler == ngx_http_init_connection
            && ngx_http_conductor_redact_logs(rd, &ls[i].log, 1) != NGX_OK)
        {
            goto failed;
        }
    }

    return;

failed:

    ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                  "conductor: no memory to redact the error log");
}


static ngx_int_t
ngx_http_conductor_redact_on_exit(ngx_http_conductor_redact_t *rd)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(rd->cycle->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = ngx_http_conductor_redact_restore;
    cln->data = rd;

    return NGX_OK;
}


/* the cycle's pool goes, and this module with it: nginx's writers back */

static void
ngx_http_conductor_redact_restore(void *data)
{
    ngx_http_conductor_redact_t *rd = data;

    ngx_uint_t   i;
    ngx_log_t  **logs, *log, *orig;

    logs = rd->logs.elts;

    for (i = 0; i < rd->logs.nelts; i++) {
        log = logs[i];

        if (log->writer == ngx_http_conductor_redact_file_writer) {
            log->writer = NULL;

        } else if (log->writer == ngx_http_conductor_redact_wrap_writer) {
            orig = log->wdata;

            if (orig) {
                log->writer = orig->writer;
                log->wdata = orig->wdata;
                continue;
            }

            /* a memory log that let go of its buffer: it logs nothing */
            log->writer = NULL;

            if (log->file == NULL) {
                log->log_level = 0;
            }
        }
    }
}


/* a file log: what ngx_log_error_core() does, on the redacted line */

static void
ngx_http_conductor_redact_file_writer(ngx_log_t *log, ngx_uint_t level,
    u_char *buf, size_t len)
{
    ssize_t  n;
    u_char   out[NGX_MAX_ERROR_STR];

    /* a head nginx has not given its file yet */
    if (log->file == NULL) {
        return;
    }

    /* a full disk: skipped for a second, as nginx does */
    if (ngx_time() == log->disk_full_time) {
        return;
    }

    buf = ngx_http_conductor_redact_buf(buf, &len, out);

    n = ngx_write_fd(log->file->fd, buf, len);

    if (n == -1 && ngx_errno == NGX_ENOSPC) {
        log->disk_full_time = ngx_time();
    }
}


/*
 * A log with a writer of its own: that writer is called on the copy of the
 * log kept when it was wrapped, which holds its own wdata.  log->wdata is
 * never changed, so a line the writer logs itself (a syslog send error
 * goes to ngx_cycle->log, maybe this log) finds this log as it was.
 */

static void
ngx_http_conductor_redact_wrap_writer(ngx_log_t *log, ngx_uint_t level,
    u_char *buf, size_t len)
{
    ngx_log_t  *orig;
    u_char      out[NGX_MAX_ERROR_STR];

    orig = log->wdata;

    /* a memory log's cleanup has let go of it: so does its writer */
    if (orig == NULL) {
        return;
    }

    buf = ngx_http_conductor_redact_buf(buf, &len, out);

    orig->writer(orig, level, buf, len);
}


/*
 * The line itself when there is nothing to hide (no copy), else its
 * redacted copy in out, at most NGX_MAX_ERROR_STR bytes as nginx's own
 * lines (a memory log relies on it), its linefeed kept last.
 */

static u_char *
ngx_http_conductor_redact_buf(u_char *buf, size_t *len, u_char *out)
{
    size_t  s, e, n, nl;

    if (!ngx_http_conductor_redact_find(buf, *len, &s, &e)) {
        return buf;
    }

    nl = (*len > 0 && buf[*len - 1] == LF) ? 1 : 0;

    n = ngx_http_conductor_redact_line(buf, *len - nl, out,
                                       NGX_MAX_ERROR_STR - nl);
    if (nl) {
        out[n++] = LF;
    }

    *len = n;

    return out;
}
